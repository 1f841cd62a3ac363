// SPDX-License-Identifier: Apache-2.0
/// @file
/// Reading and writing `.safetensors` files (the Hugging Face tensor format), with validation.
///
/// The format: an 8-byte little-endian header length N, N bytes of JSON mapping each tensor name
/// to `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets relative to the first byte after
/// the header), an optional `"__metadata__"` object of strings, then the raw little-endian data.
/// Readers accept F32, F64, F16 and BF16 and convert to the requested floating type; writers
/// write F32 (or F64 for double tensors), atomically.
#pragma once

#include <algorithm>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <fusemix/core/concepts.hpp>
#include <fusemix/detail/file.hpp>
#include <fusemix/core/error.hpp>

namespace fusemix::io {

/// A dense, row-major tensor: its shape and `product(shape)` values (a scalar has shape `{}` and
/// one value).
template <Scalar T>
struct basic_tensor {
  /// The dimensions, outermost first (PyTorch's order); `{}` for a scalar.
  std::vector<std::size_t> shape;
  /// The values in row-major (C) order; `data.size()` is the product of `shape`.
  std::vector<T> data;
};
/// The float tensor the library uses for weights.
using tensor = basic_tensor<float>;

/// Tensors by name, in name order (the order `write_safetensors` lays them out in).
template <Scalar T>
using basic_tensor_map = std::map<std::string, basic_tensor<T>>;
using tensor_map = basic_tensor_map<float>;

/// A tensor's values where they already lie, as pieces laid end to end in row-major order: what
/// `write_safetensors` writes without copying them first (a model's parameters in host memory, an
/// optimiser's moments). The pieces must stay alive and unchanged until the write returns.
template <Scalar T>
struct basic_tensor_view {
  std::vector<std::size_t> shape;
  std::vector<std::span<const T>> parts;
};
/// Tensor views by name, in name order.
template <Scalar T>
using basic_tensor_view_map = std::map<std::string, basic_tensor_view<T>>;

/// The contents of a `.safetensors` file.
template <Scalar T>
struct basic_safetensors_file {
  /// Every tensor, converted to `T`.
  basic_tensor_map<T> tensors;
  /// The `"__metadata__"` strings (empty if the file has none).
  std::map<std::string, std::string> metadata;
  /// The file it was read from, used in `require`'s messages (empty if built in memory).
  std::filesystem::path path;
};
using safetensors_file = basic_safetensors_file<float>;

/// Reads a `.safetensors` file, converting F32, F64, F16 and BF16 tensors to `T`.
///
/// F16 and BF16 convert exactly; F64 read as float rounds to nearest.
///
/// @tparam T the element type of the tensors returned (float, or double for reference data).
/// @param path the file to read.
/// @returns the tensors, the metadata and the path.
/// @throws io_error naming the file and the problem if it cannot be read, is shorter than 8 bytes,
///         its header length runs past the end, its header is not valid JSON or not an object,
///         an entry is not an object or lacks `dtype`, `shape` or `data_offsets`, a dtype is not
///         supported, a shape's size overflows, an entry's offsets do not match its shape or lie
///         outside the data, two tensors overlap, or a metadata value is not a string.
///
/// **Example**
///
///     fusemix::io::safetensors_file f = fusemix::io::read_safetensors("adapter.safetensors");
///     const fusemix::io::tensor& w = fusemix::io::require(f, "vis_proj.0.fn.0.weight", {48, 12});
template <Scalar T = float>
[[nodiscard]] basic_safetensors_file<T> read_safetensors(const std::filesystem::path& path);

/// Writes tensors to a `.safetensors` file, atomically: F32 for float tensors, F64 for double.
///
/// Tensors are laid out contiguously in name order; the JSON header (metadata first, then the
/// tensors in name order) is padded with spaces to a multiple of 8 bytes. Empty `metadata`
/// writes no `"__metadata__"` entry.
///
/// @param path the file to create or replace.
/// @param tensors the tensors to write.
/// @param metadata free-form string pairs stored under `"__metadata__"`.
/// @throws shape_error if a tensor's `data.size()` is not the product of its shape.
/// @throws argument_error if a tensor is named `"__metadata__"` or a name or metadata string is
///         not valid UTF-8.
/// @throws io_error if the file cannot be written (the target is then unchanged).
///
/// **Example**
///
///     fusemix::io::tensor_map t;
///     t["w"] = {.shape = {2, 3}, .data = {1, 2, 3, 4, 5, 6}};
///     fusemix::io::write_safetensors("w.safetensors", t, {{"format", "pt"}});
template <Scalar T>
void write_safetensors(const std::filesystem::path& path, const basic_tensor_map<T>& tensors,
                       const std::map<std::string, std::string>& metadata = {});
/// As above, from views of values held elsewhere (written in place: no copy of the tensors is made,
/// so a checkpoint of a large model costs no memory beyond the file's buffer).
template <Scalar T>
void write_safetensors(const std::filesystem::path& path, const basic_tensor_view_map<T>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

/// Looks up a tensor and checks its shape.
///
/// @param tensors the tensors to search.
/// @param name the tensor's name.
/// @param expected_shape the shape it must have.
/// @returns the tensor.
/// @throws io_error "missing tensor" if there is no tensor `name`.
/// @throws shape_error if its shape differs, as in
///         "fusemix::io::require: tensor "w" has the wrong shape (expected [2, 3], got [3, 2])".
///
/// **Example**
///
///     const auto& b = fusemix::io::require(tensors, "vis_proj.2.bias", {8});
template <Scalar T>
const basic_tensor<T>& require(const basic_tensor_map<T>& tensors, std::string_view name,
                               std::span<const std::size_t> expected_shape);
/// As above, with the shape written inline: `require(t, "w", {2, 3})`.
template <Scalar T>
const basic_tensor<T>& require(const basic_tensor_map<T>& tensors, std::string_view name,
                               std::initializer_list<std::size_t> expected_shape);
/// As above, naming the file the tensors came from in the messages.
template <Scalar T>
const basic_tensor<T>& require(const basic_safetensors_file<T>& file, std::string_view name,
                               std::span<const std::size_t> expected_shape);
/// As above, naming the file, with the shape written inline.
template <Scalar T>
const basic_tensor<T>& require(const basic_safetensors_file<T>& file, std::string_view name,
                               std::initializer_list<std::size_t> expected_shape);

}  // namespace fusemix::io

// ============================================================================================
// Definitions
// ============================================================================================

namespace fusemix::detail {

/// "[a, b, c]", the way safetensors (JSON) writes shapes.
inline std::string st_shape_string(std::span<const std::size_t> shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

/// The size in bytes of one element of a supported dtype, or 0 if not supported.
inline std::size_t st_itemsize(std::string_view dtype) noexcept {
  if (dtype == "F32") return 4;
  if (dtype == "F64") return 8;
  if (dtype == "F16" || dtype == "BF16") return 2;
  return 0;
}

/// One validated header entry.
struct st_entry {
  std::string name;
  std::string dtype;
  std::vector<std::size_t> shape;
  std::size_t count = 0;
  std::uint64_t begin = 0, end = 0;
};

/// Reads a JSON array of non-negative integers; false if `j` is anything else.
inline bool st_unsigned_array(const nlohmann::json& j, std::vector<std::uint64_t>& out) {
  if (!j.is_array()) return false;
  out.clear();
  for (const auto& v : j) {
    if (!v.is_number_unsigned()) return false;
    out.push_back(v.get<std::uint64_t>());
  }
  return true;
}

/// Validates one tensor entry against the data size (`data_size` bytes after the header).
inline st_entry st_parse_entry(const input_file& in, const std::string& name,
                               const nlohmann::json& j, std::uint64_t data_size) {
  const std::string what = concat("tensor \"", name, "\"");
  if (!j.is_object()) in.fail(concat(what, ": entry is not a JSON object"));
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!j.contains(key)) in.fail(concat(what, ": entry lacks \"", key, "\""));
  st_entry e;
  e.name = name;
  if (!j["dtype"].is_string()) in.fail(concat(what, ": \"dtype\" is not a string"));
  e.dtype = j["dtype"].get<std::string>();
  const std::size_t itemsize = st_itemsize(e.dtype);
  if (itemsize == 0)
    in.fail(concat(what, ": dtype ", e.dtype, " not supported; expected F32, F64, F16 or BF16"));
  std::vector<std::uint64_t> raw;
  if (!st_unsigned_array(j["shape"], raw))
    in.fail(concat(what, ": \"shape\" is not an array of non-negative integers"));
  constexpr std::uint64_t limit = std::numeric_limits<std::size_t>::max();
  std::uint64_t count = 1;
  bool overflow = false;
  for (const std::uint64_t d : raw) {
    if (d > limit) overflow = true;
    e.shape.push_back(static_cast<std::size_t>(d));
    if (d != 0 && count > limit / d / itemsize) overflow = true;
    count *= d;
  }
  if (overflow) {
    std::string s = "[";
    for (std::size_t i = 0; i < raw.size(); ++i) s += concat(i > 0 ? ", " : "", raw[i]);
    in.fail(concat(what, ": shape ", s, "] is too large (its byte size overflows)"));
  }
  e.count = static_cast<std::size_t>(count);
  std::vector<std::uint64_t> off;
  if (!st_unsigned_array(j["data_offsets"], off) || off.size() != 2)
    in.fail(concat(what, ": \"data_offsets\" is not an array of two non-negative integers"));
  e.begin = off[0];
  e.end = off[1];
  const std::string offsets = concat("data_offsets [", e.begin, ", ", e.end, "]");
  if (e.begin > e.end) in.fail(concat(what, ": ", offsets, " are reversed (begin > end)"));
  if (e.end > data_size)
    in.fail(concat(what, ": ", offsets, " run past the end of the data (", data_size, " bytes)"));
  if (e.end - e.begin != count * itemsize)
    in.fail(concat(what, ": ", offsets, " span ", e.end - e.begin, " bytes, but shape ",
                   st_shape_string(e.shape), " of ", e.dtype, " needs ", count * itemsize));
  return e;
}

/// Decodes `n` elements of `dtype` from little-endian bytes.
template <class T>
void st_decode(std::string_view dtype, const unsigned char* p, T* out, std::size_t n) {
  if (dtype == "F32") {
    for (std::size_t i = 0; i < n; ++i, p += 4)
      out[i] = static_cast<T>(std::bit_cast<float>(load_le<std::uint32_t>(p)));
  } else if (dtype == "F64") {
    for (std::size_t i = 0; i < n; ++i, p += 8)
      out[i] = static_cast<T>(std::bit_cast<double>(load_le<std::uint64_t>(p)));
  } else if (dtype == "F16") {
    for (std::size_t i = 0; i < n; ++i, p += 2)
      out[i] = static_cast<T>(half_to_float(load_le<std::uint16_t>(p)));
  } else {
    for (std::size_t i = 0; i < n; ++i, p += 2)
      out[i] = static_cast<T>(bfloat16_to_float(load_le<std::uint16_t>(p)));
  }
}

/// The safetensors dtype name fusemix writes for `T`.
template <class T>
constexpr const char* st_dtype_name() noexcept {
  return sizeof(T) == 4 ? "F32" : "F64";
}

/// Throws io_error "missing tensor" or shape_error "wrong shape", naming `where` (and the file).
template <class T>
const io::basic_tensor<T>& st_require(std::string_view where,
                                      const io::basic_tensor_map<T>& tensors,
                                      std::string_view name, std::span<const std::size_t> shape,
                                      const std::filesystem::path* file) {
  const auto it = tensors.find(std::string(name));
  const std::string in_file = file && !file->empty() ? concat(" in ", *file) : std::string();
  if (it == tensors.end())
    throw io_error(concat(where, ": missing tensor \"", name, "\"", in_file));
  const auto& got = it->second.shape;
  if (!std::equal(got.begin(), got.end(), shape.begin(), shape.end()))
    throw_shape_error(where, concat("tensor \"", name, "\"", in_file, " has the wrong shape"),
                      st_shape_string(shape), st_shape_string(got));
  return it->second;
}

}  // namespace fusemix::detail

namespace fusemix::io {

template <Scalar T>
basic_safetensors_file<T> read_safetensors(const std::filesystem::path& path) {
  // Real headers are kilobytes; the reference implementation refuses more than 100 MB too.
  constexpr std::uint64_t max_header = 100'000'000;
  detail::input_file in("fusemix::io::read_safetensors", path);
  unsigned char len_bytes[8];
  const std::size_t got = in.read_some(len_bytes, sizeof len_bytes);
  if (got < sizeof len_bytes)
    in.fail(concat("file too short: expected at least 8 bytes for the header length, "
                           "found ", got));
  const std::uint64_t header_len = detail::load_le<std::uint64_t>(len_bytes);
  if (in.is_regular() && header_len > in.size() - 8)
    in.fail(concat("header length ", header_len, " runs past the end of the file (",
                           in.size(), " bytes)"));
  if (header_len > max_header)
    in.fail(concat("header length ", header_len, " exceeds the limit of ", max_header,
                           " bytes"));
  // Grown as the bytes arrive: for a pipe, header_len has not been checked against a file size,
  // and an 8-byte input claiming 100 MB must not allocate them.
  const std::string header_text =
      in.read_exact_string(static_cast<std::size_t>(header_len), "header");

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_text);
  } catch (const nlohmann::json::exception& e) {
    // Not only parse_error: a number too large for a double (`1e400`) is an out_of_range (406).
    // Found by tests/fuzz/fuzz_safetensors.cpp.
    in.fail(concat("malformed JSON header: ", e.what()));
  }
  if (!header.is_object()) in.fail("the header is not a JSON object");

  // Pipes have no size up front: read their data into memory. Regular files are read per tensor.
  std::string piped;
  std::uint64_t data_size = 0;
  if (in.is_regular()) {
    data_size = in.size() - 8 - header_len;
  } else {
    piped = in.read_rest();
    data_size = piped.size();
  }

  basic_safetensors_file<T> result;
  result.path = path;
  std::vector<detail::st_entry> entries;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) in.fail("\"__metadata__\" is not a JSON object");
      for (const auto& [key, v] : value.items()) {
        if (!v.is_string())
          in.fail(concat("metadata value for key \"", key, "\" is not a string"));
        result.metadata.emplace(key, v.template get<std::string>());
      }
      continue;
    }
    entries.push_back(detail::st_parse_entry(in, name, value, data_size));
  }

  // Tensors must not share bytes. Empty tensors occupy nothing, so they cannot overlap.
  std::vector<const detail::st_entry*> by_offset;
  for (const auto& e : entries)
    if (e.end > e.begin) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto* a, const auto* b) { return a->begin < b->begin; });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    const auto& a = *by_offset[i - 1];
    const auto& b = *by_offset[i];
    if (a.end > b.begin)
      in.fail(concat("tensors \"", a.name, "\" and \"", b.name,
                             "\" overlap (data_offsets [", a.begin, ", ", a.end, "] and [",
                             b.begin, ", ", b.end, "])"));
  }

  const std::uint64_t data_start = 8 + header_len;
  std::vector<unsigned char> buf;
  for (const auto& e : entries) {
    basic_tensor<T> t;
    t.shape = e.shape;
    t.data.resize(e.count);
    const auto bytes = static_cast<std::size_t>(e.end - e.begin);
    if (!in.is_regular()) {
      detail::st_decode(e.dtype, reinterpret_cast<const unsigned char*>(piped.data()) + e.begin,
                        t.data.data(), e.count);
    } else if (std::endian::native == std::endian::little && std::same_as<T, float> &&
               e.dtype == "F32") {
      in.read_exact_at(data_start + e.begin, t.data.data(), bytes, "tensor data");
    } else {
      buf.resize(bytes);
      in.read_exact_at(data_start + e.begin, buf.data(), bytes, "tensor data");
      detail::st_decode(e.dtype, buf.data(), t.data.data(), e.count);
    }
    result.tensors.emplace(e.name, std::move(t));
  }
  return result;
}

template <Scalar T>
void write_safetensors(const std::filesystem::path& path, const basic_tensor_map<T>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  basic_tensor_view_map<T> views;
  for (const auto& [name, t] : tensors) views[name] = {t.shape, {std::span<const T>(t.data)}};
  write_safetensors(path, views, metadata);
}

template <Scalar T>
void write_safetensors(const std::filesystem::path& path, const basic_tensor_view_map<T>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  static_assert(std::same_as<T, float> || std::same_as<T, double>,
                "write_safetensors writes float (F32) or double (F64) tensors");
  constexpr std::string_view where = "fusemix::io::write_safetensors";
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__")
      throw argument_error(concat(where, ": ", path, ": a tensor cannot be named "
                                          "\"__metadata__\" (the key is reserved for metadata)"));
    std::size_t count = 1;
    bool overflow = false;
    for (const std::size_t d : t.shape) {
      if (d != 0 && count > std::numeric_limits<std::size_t>::max() / d / sizeof(T))
        overflow = true;
      count *= d;
    }
    std::size_t size = 0;
    for (const auto& part : t.parts) size += part.size();
    if (overflow || count != size)
      throw_shape_error(
          where,
          concat("tensor \"", name, "\": data size does not match shape ",
                         detail::st_shape_string(t.shape)),
          overflow ? std::string("an addressable size") : std::to_string(count), size);
    const std::uint64_t bytes = count * sizeof(T);
    header[name] = {{"dtype", detail::st_dtype_name<T>()},
                    {"shape", t.shape},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::type_error& e) {  // names and strings must be valid UTF-8
    throw argument_error(concat(where, ": ", path, ": ", e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  unsigned char len[8];
  detail::store_le(len, static_cast<std::uint64_t>(text.size()));

  io::atomic_write(where, path, [&](io::atomic_file& out) {
    out.write(len, sizeof len);
    out.write(text);
    std::vector<unsigned char> buf;
    for (const auto& [name, t] : tensors)
      for (const std::span<const T> part : t.parts) {
        if constexpr (std::endian::native == std::endian::little) {
          out.write(part.data(), part.size() * sizeof(T));
        } else {
          using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
          buf.resize(part.size() * sizeof(T));
          for (std::size_t i = 0; i < part.size(); ++i)
            detail::store_le(buf.data() + i * sizeof(T), std::bit_cast<U>(part[i]));
          out.write(buf.data(), buf.size());
        }
      }
  });
}

template <Scalar T>
const basic_tensor<T>& require(const basic_tensor_map<T>& tensors, std::string_view name,
                               std::span<const std::size_t> expected_shape) {
  return detail::st_require("fusemix::io::require", tensors, name, expected_shape, nullptr);
}

template <Scalar T>
const basic_tensor<T>& require(const basic_tensor_map<T>& tensors, std::string_view name,
                               std::initializer_list<std::size_t> expected_shape) {
  return detail::st_require("fusemix::io::require", tensors, name,
                            std::span<const std::size_t>(expected_shape), nullptr);
}

template <Scalar T>
const basic_tensor<T>& require(const basic_safetensors_file<T>& file, std::string_view name,
                               std::span<const std::size_t> expected_shape) {
  return detail::st_require("fusemix::io::require", file.tensors, name, expected_shape, &file.path);
}

template <Scalar T>
const basic_tensor<T>& require(const basic_safetensors_file<T>& file, std::string_view name,
                               std::initializer_list<std::size_t> expected_shape) {
  return detail::st_require("fusemix::io::require", file.tensors, name,
                            std::span<const std::size_t>(expected_shape), &file.path);
}

}  // namespace fusemix::io
