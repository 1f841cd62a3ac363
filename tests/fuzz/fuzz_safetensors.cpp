// SPDX-License-Identifier: Apache-2.0
/// @file
/// libFuzzer target for the `.safetensors` reader (<fusemix/io/safetensors.hpp>).
///
/// Each input is read by read_safetensors<float> and read_safetensors<double>, once as a regular
/// file and once through a pipe (see fuzz_input.hpp). A malformed input must make the reader
/// throw `fusemix::error`.
///
/// Findings: a crash, any other exception escaping (std::bad_alloc and nlohmann::json's
/// exceptions included: sizes must be checked against the file before allocating, and JSON
/// errors turned into io_error), an AddressSanitizer or UndefinedBehaviorSanitizer report, a
/// leak, a timeout, an allocation over -malloc_limit_mb, and a broken invariant of a result,
/// checked below: every tensor holds product(shape) values (all of which are read, so a view
/// past its buffer is caught), the float and double readers accept the same files with the same
/// names, shapes, metadata and values, and a pipe gives the same answer as a regular file.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>

#include <fusemix/io/safetensors.hpp>

#include "fuzz_input.hpp"

namespace {

namespace fs = std::filesystem;
namespace io = fusemix::io;
using fusemix::fuzz::die;
using fusemix::fuzz::succeeds;

/// Sums land here so that every element is read.
volatile double sink = 0;

struct outcome {
  std::optional<io::basic_safetensors_file<float>> f;
  std::optional<io::basic_safetensors_file<double>> d;
};

/// True if `a` and `b` are the same value (NaNs are equal to each other).
template <class T>
bool same(T a, T b) {
  return (std::isnan(a) && std::isnan(b)) || (a == b && std::signbit(a) == std::signbit(b));
}

/// Checks each tensor's size against its shape and reads every value.
template <class T>
void touch(const io::basic_safetensors_file<T>& file) {
  double s = 0;
  for (const auto& [name, t] : file.tensors) {
    std::size_t count = 1;
    for (const std::size_t d : t.shape) count *= d;
    if (t.data.size() != count) die("a tensor's data size is not the product of its shape");
    for (const T x : t.data) s += static_cast<double>(x);
    s += static_cast<double>(name.size());
  }
  for (const auto& [key, value] : file.metadata) s += static_cast<double>(key.size() + value.size());
  sink = sink + s;
}

template <class WithPath>
outcome read_all(WithPath&& with_path) {
  outcome o;
  with_path(
      [&](const fs::path& p) { (void)succeeds([&] { o.f = io::read_safetensors<float>(p); }); });
  with_path(
      [&](const fs::path& p) { (void)succeeds([&] { o.d = io::read_safetensors<double>(p); }); });
  return o;
}

void check(const outcome& o) {
  if (o.f.has_value() != o.d.has_value())
    die("read_safetensors<float> and <double> disagree on whether the file is valid");
  if (!o.f) return;
  touch(*o.f);
  touch(*o.d);
  if (o.f->metadata != o.d->metadata) die("the float and double reads differ in metadata");
  if (o.f->tensors.size() != o.d->tensors.size())
    die("the float and double reads differ in their tensors");
  auto it = o.d->tensors.begin();
  for (const auto& [name, t] : o.f->tensors) {
    const auto& [dname, dt] = *it++;
    if (name != dname || t.shape != dt.shape || t.data.size() != dt.data.size())
      die("the float and double reads differ in a tensor's name or shape");
    for (std::size_t i = 0; i < t.data.size(); ++i)
      if (!same(t.data[i], static_cast<float>(dt.data[i])))
        die("read_safetensors<float> is not read_safetensors<double> rounded to float");
  }
}

template <class T>
bool same_file(const io::basic_safetensors_file<T>& a, const io::basic_safetensors_file<T>& b) {
  if (a.metadata != b.metadata || a.tensors.size() != b.tensors.size()) return false;
  auto it = b.tensors.begin();
  for (const auto& [name, t] : a.tensors) {
    const auto& [bname, bt] = *it++;
    if (name != bname || t.shape != bt.shape || t.data.size() != bt.data.size()) return false;
    for (std::size_t i = 0; i < t.data.size(); ++i)
      if (!same(t.data[i], bt.data[i])) return false;
  }
  return true;
}

/// A regular file and a pipe with the same bytes must be accepted or refused alike, and give
/// the same tensors.
void check_same(const outcome& file, const outcome& pipe) {
  if (file.f.has_value() != pipe.f.has_value() || file.d.has_value() != pipe.d.has_value())
    die("the reader accepts the input as a regular file but not through a pipe, or vice versa");
  if (file.f && (!same_file(*file.f, *pipe.f) || !same_file(*file.d, *pipe.d)))
    die("read_safetensors differs between a regular file and a pipe");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fusemix::fuzz::read_both_ways(
      data, size, [](auto&& with_path) { return read_all(with_path); }, check, check_same);
  return 0;
}
