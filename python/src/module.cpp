// SPDX-License-Identifier: Apache-2.0
// fusemix._core: the extension module under `import fusemix` (python/fusemix/__init__.py is the
// public layer). It runs the program's own code (libfusemix_training: apps/fusemix/training.cpp
// and train_loop.hpp), so `fusemix.train` and `fusemix train` give the same bits.
//
// Arrays arrive as float32 C-contiguous (the Python layer converts anything else, once, and says
// so in its docs) and are read in place; the GIL is released while C++ computes.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <fusemix/fusemix.hpp>

#include "model_file.hpp"
#include "training.hpp"

namespace py = pybind11;

namespace {

// No forcecast: the caster neither converts nor copies an array that is already float32 and
// C-contiguous, and the Python layer hands over nothing else.
using f32_array = py::array_t<float, py::array::c_style>;

fusemix::latent_view<float> view_of(const f32_array& a, std::string_view where, std::string_view name) {
  if (a.ndim() != 2)
    fusemix::throw_shape_error(where, fusemix::concat(name, ": latents are a 2-D array (rows, width)"), "2 dimensions",
                               fusemix::concat(a.ndim(), " dimensions"));
  return {a.data(), static_cast<std::size_t>(a.shape(0)), static_cast<std::size_t>(a.shape(1))};
}

fusemix::matrix<float> matrix_of(const fusemix::latent_view<float>& v) {
  return Eigen::Map<const fusemix::matrix<float>>(v.data(), static_cast<Eigen::Index>(v.rows()),
                                                  static_cast<Eigen::Index>(v.cols()));
}

/// `to = d[key]` if `d` has the key and it is not None; whether it did.
template <class T>
bool set_if(const py::dict& d, const char* key, T& to) {
  if (!d.contains(key) || d[key].is_none()) return false;
  to = d[key].cast<T>();
  return true;
}

py::object json_to_python(const nlohmann::json& j) {
  return py::module_::import("json").attr("loads")(j.dump());
}

/// The trained model behind fusemix.Model: the file's tensors (for `save`) and its adapters.
class model {
 public:
  explicit model(const std::string& path) : file_(fusemix::io::read_safetensors(path)), m_(fusemix::io::load_model(path)) {
    if (!m_.x)
      fusemix::throw_expected<fusemix::io_error>("fusemix.load", fusemix::concat(path, ": no X adapter"),
                                                 "tensors named vis_proj.*", "none");
  }

  /// One side's embeddings of `a`, a block of rows at a time (bounded activation memory).
  py::array_t<float> embed(const std::string& side, const f32_array& a) const {
    const std::string where = "fusemix.Model.embed_" + side;
    const auto v = view_of(a, where, "latents");
    const auto* h = side == "x" ? &*m_.x : (m_.y ? &*m_.y : nullptr);
    const std::size_t in = h != nullptr ? h->in_dim() : m_.x->out_dim(), out = h != nullptr ? h->out_dim() : in;
    if (v.cols() != in)
      fusemix::throw_shape_error(where, fusemix::concat("latent width must equal the ", side, " side's input width"), in,
                                 v.cols());
    fusemix_cli::require_finite(where, "latents", v);
    py::array_t<float> result({static_cast<py::ssize_t>(v.rows()), static_cast<py::ssize_t>(out)});
    float* dst = result.mutable_data();
    {
      py::gil_scoped_release no_gil;
      const std::lock_guard one_call(busy_);
      if (h == nullptr) {  // an identity side: the latents as they are
        std::copy(v.data(), v.data() + v.rows() * v.cols(), dst);
      } else {
        constexpr std::size_t block = 16384;
        for (std::size_t r0 = 0; r0 < v.rows(); r0 += block) {
          const std::size_t n = std::min(block, v.rows() - r0);
          const fusemix::matrix<float> s = h->embed(matrix_of({v.data() + r0 * v.cols(), n, v.cols()}));
          std::copy(s.data(), s.data() + s.size(), dst + r0 * out);
        }
      }
    }
    return result;
  }

  [[nodiscard]] py::dict evaluate(const f32_array& x, const f32_array& y,
                                  const std::vector<std::int64_t>& image_of_text) const {
    constexpr std::string_view where = "fusemix.evaluate";
    const auto vx = view_of(x, where, "x"), vy = view_of(y, where, "y");
    if (vx.cols() != m_.x->in_dim())
      fusemix::throw_shape_error(where, "x: latent width must equal the in_dim of vis_proj.", m_.x->in_dim(), vx.cols());
    const std::size_t y_in = m_.y ? m_.y->in_dim() : m_.x->out_dim();
    if (vy.cols() != y_in)
      fusemix::throw_shape_error(where,
                                 m_.y ? "y: latent width must equal the in_dim of text_proj."
                                      : "y: the model has no text_proj. adapter, so the latent width must equal "
                                        "vis_proj.'s output width",
                                 y_in, vy.cols());
    fusemix_cli::require_finite(where, "x", vx);
    fusemix_cli::require_finite(where, "y", vy);
    fusemix::retrieval_result r;
    {
      py::gil_scoped_release no_gil;
      const std::lock_guard one_call(busy_);
      const fusemix::matrix<float> zx = matrix_of(vx), zy = matrix_of(vy);
      if (m_.y) {
        r = fusemix_cli::retrieval_of(*m_.x, *m_.y, zx, zy, image_of_text);
      } else {
        fusemix::identity_adapter<> id(y_in);
        r = fusemix_cli::retrieval_of(*m_.x, id, zx, zy, image_of_text);
      }
    }
    return json_to_python(fusemix_cli::retrieval_json(r));
  }

  void save(const std::string& path) const { fusemix::io::write_safetensors(path, file_.tensors, file_.metadata); }

  [[nodiscard]] py::dict info() const {
    py::dict d;
    auto side = [](const auto& h) -> py::object {
      if (!h) return py::none();
      py::dict s;
      s["in_dim"] = h->in_dim();
      s["out_dim"] = h->out_dim();
      s["depth"] = h->shape().depth;
      s["expansion"] = h->shape().expansion;
      return py::object(std::move(s));
    };
    d["x"] = side(m_.x);
    d["y"] = side(m_.y);
    d["loss"] = m_.loss;
    py::dict p;
    for (const auto& [name, value] : m_.loss_parameters) p[py::str(name)] = value;
    d["loss_parameters"] = p;
    return d;
  }

 private:
  fusemix::io::safetensors_file file_;
  // Adapters in evaluation mode. Their forward passes use the adapters' own buffers, and calls
  // run without the GIL, so two Python threads on one model take turns here.
  mutable fusemix::io::model<> m_;
  mutable std::mutex busy_;
};

// `x`, `y`: float32 arrays, or lists of .npy paths (read in place, as the program's --x/--y).
py::dict train_pairs(const py::object& x, const py::object& y, const py::object& x_val, const py::object& y_val,
                     const py::dict& o, const py::object& callback, const py::object& warn) {
  constexpr std::string_view where = "fusemix.train";
  // Settings absent from `o` keep the program's defaults, as flags not given do.
  fusemix_cli::train_settings s;
  s.out = o["out"].cast<std::string>();
  const fusemix_cli::given_settings given{
      .epochs = set_if(o, "epochs", s.train.epochs), .batch = set_if(o, "batch", s.train.batch),
      .lr = set_if(o, "lr", s.train.lr), .weight_decay = set_if(o, "weight_decay", s.train.weight_decay),
      .depth_x = set_if(o, "depth_x", s.depth_x), .depth_y = set_if(o, "depth_y", s.depth_y),
      .shared_dim = set_if(o, "shared_dim", s.shared_dim), .dropout = set_if(o, "dropout", s.dropout),
      .alpha = set_if(o, "alpha", s.train.mixup.alpha), .mix = o.contains("mix") && !o["mix"].is_none()};
  set_if(o, "identity_y", s.identity_y);
  set_if(o, "expansion", s.expansion);
  set_if(o, "auto", s.auto_search);
  if (o.contains("budget_minutes") && !o["budget_minutes"].is_none()) s.budget_minutes = o["budget_minutes"].cast<double>();
  set_if(o, "seed", s.train.seed);
  set_if(o, "loss", s.loss);
  set_if(o, "threads", s.threads);
  set_if(o, "gemm", s.gemm);
  set_if(o, "device", s.device);
  set_if(o, "precision", s.precision);
  set_if(o, "gpu_latents", s.gpu_latents);
  set_if(o, "checkpoint_every", s.checkpoint_every);
  set_if(o, "checkpoint_minutes", s.checkpoint_minutes);
  set_if(o, "progress_seconds", s.progress_seconds);
  set_if(o, "resume", s.resume);
  set_if(o, "quiet", s.quiet);
  set_if(o, "micro_batch", s.train.micro_batch);
  set_if(o, "max_steps", s.train.max_steps);
  set_if(o, "final_alpha", s.train.mixup.final_alpha);
  set_if(o, "no_val", s.no_val);
  set_if(o, "keep_last", s.keep_last);
  set_if(o, "patience", s.patience);
  if (o.contains("val_fraction") && !o["val_fraction"].is_none()) s.val_fraction = o["val_fraction"].cast<double>();
  std::string alpha_schedule = "constant";
  set_if(o, "alpha_schedule", alpha_schedule);
  s.train.mixup.schedule = fusemix::parse_alpha_schedule(alpha_schedule);
  std::string preset, mix = "permutation";
  set_if(o, "preset", preset);
  set_if(o, "mix", mix);
  fusemix_cli::apply_recipe(s, preset, mix, given);
  if (!callback.is_none())
    s.on_epoch = [&callback](const nlohmann::json& record) {
      py::gil_scoped_acquire gil;
      callback(json_to_python(record));
    };

  if (!warn.is_none())
    s.on_warning = [&warn](const std::string& message) {
      py::gil_scoped_acquire gil;
      warn(message);
    };

  fusemix_cli::data_set d;
  if (py::isinstance<py::list>(x)) {
    auto files = [](const py::object& v) {
      std::vector<std::filesystem::path> p;
      for (const auto& f : v.cast<std::vector<std::string>>()) p.emplace_back(f);
      return p;
    };
    d.x_files.emplace(files(x));
    d.y_files.emplace(files(y));
  } else {
    d.x = matrix_of(view_of(x.cast<f32_array>(), where, "x"));
    d.y = matrix_of(view_of(y.cast<f32_array>(), where, "y"));
  }
  if (x_val.is_none() != y_val.is_none())
    throw fusemix::argument_error("fusemix.train: x_val and y_val go together (got only one)");
  if (!x_val.is_none()) {
    const auto xv = view_of(x_val.cast<f32_array>(), where, "x_val"), yv = view_of(y_val.cast<f32_array>(), where, "y_val");
    fusemix_cli::require_finite(where, "x_val", xv);
    fusemix_cli::require_finite(where, "y_val", yv);
    d.x_val = matrix_of(xv);
    d.y_val = matrix_of(yv);
    fusemix_cli::check_validation_pairs(where, d, {"x", "y", "x_val", "y_val"});
  }
  fusemix_cli::prepare_run(s, d);
  fusemix_cli::train_result r;
  {
    py::gil_scoped_release no_gil;
    if (s.auto_search) fusemix_cli::search_settings(s, d);
    r = fusemix_cli::train(s, d);
  }
  py::dict out;
  out["last_loss"] = r.last_loss;
  out["val"] = r.val ? py::object(json_to_python(fusemix_cli::retrieval_json(*r.val))) : py::object(py::none());
  out["best"] = r.best ? py::object(json_to_python(fusemix_cli::retrieval_json(*r.best))) : py::object(py::none());
  out["best_epoch"] = r.best_epoch;
  out["epochs_trained"] = r.epochs_trained;
  out["stopped_early"] = r.stopped_early;
  out["epochs"] = s.train.epochs;
  out["batch"] = s.train.batch;
  out["depth_x"] = s.depth_x;
  out["depth_y"] = s.depth_y;
  out["lr"] = s.train.lr;
  out["weight_decay"] = s.train.weight_decay;
  out["held_out"] = s.held_out;
  out["shared_dim"] = s.shared_dim;
  out["dropout"] = s.dropout;
  out["alpha"] = s.train.mixup.alpha;
  out["mix"] = fusemix::to_string(s.train.mixup.mode);
  return out;
}

py::tuple select_subset(const f32_array& z, const py::dict& o) {
  constexpr std::string_view where = "fusemix.select";
  const auto v = view_of(z, where, "z");
  fusemix_cli::require_finite(where, "z", v);
  fusemix_cli::select_settings s;
  set_if(o, "k", s.k);
  set_if(o, "window", s.window);
  set_if(o, "kernel", s.kernel);
  set_if(o, "degree", s.degree);
  set_if(o, "offset", s.offset);
  set_if(o, "gamma", s.gamma);
  set_if(o, "normalize", s.normalize);
  set_if(o, "threshold", s.threshold);
  set_if(o, "uniform", s.uniform);
  set_if(o, "seed", s.seed);
  set_if(o, "device", s.device);
  set_if(o, "threads", s.threads);
  fusemix_cli::select_result r;
  {
    py::gil_scoped_release no_gil;
    r = fusemix_cli::select(s, v);
  }
  py::array_t<std::int64_t> picks(static_cast<py::ssize_t>(r.selection.picks.size()));
  std::copy(r.selection.picks.begin(), r.selection.picks.end(), picks.mutable_data());
  return py::make_tuple(picks, std::string(fusemix::to_string(r.selection.stop)), r.log_det, r.seconds);
}

/// An exception class deriving from `bases`, set as `m.name`. The reference is kept for the
/// translator for the life of the process (module objects outlive no interpreter here).
PyObject* exception_type(py::module_& m, const char* name, const py::tuple& bases, const char* doc) {
  const std::string qualified = std::string("fusemix._core.") + name;
  PyObject* t = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, bases.ptr(), nullptr);
  if (t == nullptr) throw py::error_already_set();
  m.attr(name) = py::handle(t);
  return t;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fusemix's extension module; use the package `fusemix`, not this.";
  m.attr("version") = std::string(fusemix::version_string);
  m.attr("cuda_built") = fusemix_cli::cuda_built();

  // Each derives from fusemix.Error and from the builtin a Python user would catch.
  static PyObject* const base =
      exception_type(m, "Error", py::make_tuple(py::handle(PyExc_Exception)), "Any error fusemix reports.");
  const auto with = [](PyObject* builtin) { return py::make_tuple(py::handle(base), py::handle(builtin)); };
  static PyObject* const shape = exception_type(m, "ShapeError", with(PyExc_ValueError), "Arrays of the wrong shape or width.");
  static PyObject* const argument = exception_type(m, "ArgumentError", with(PyExc_ValueError), "A setting out of its range.");
  static PyObject* const numeric = exception_type(m, "NumericError", with(PyExc_ValueError),
                                                  "NaN or Inf in the data, or a loss that stopped being finite.");
  static PyObject* const io = exception_type(m, "IoError", with(PyExc_OSError), "A file that cannot be read or written.");
  static PyObject* const device = exception_type(m, "DeviceError", with(PyExc_RuntimeError), "No GPU, or a GPU failure.");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const fusemix::shape_error& e) {
      PyErr_SetString(shape, e.what());
    } catch (const fusemix::argument_error& e) {
      PyErr_SetString(argument, e.what());
    } catch (const fusemix::numeric_error& e) {
      PyErr_SetString(numeric, e.what());
    } catch (const fusemix::io_error& e) {
      PyErr_SetString(io, e.what());
    } catch (const fusemix::device_error& e) {
      PyErr_SetString(device, e.what());
    } catch (const fusemix::error& e) {
      PyErr_SetString(base, e.what());
    } catch (const fusemix_cli::diverged& e) {
      PyErr_SetString(numeric, e.what());
    } catch (const fusemix_cli::interrupted& e) {
      // The run saved its checkpoint; Python sees the Ctrl-C it asked for.
      PyErr_SetString(PyExc_KeyboardInterrupt, e.what());
    }
  });

  py::class_<model>(m, "Model")
      .def(py::init<const std::string&>(), py::arg("path"))
      .def("embed", &model::embed, py::arg("side"), py::arg("latents"))
      .def("evaluate", &model::evaluate, py::arg("x"), py::arg("y"), py::arg("image_of_text"))
      .def("save", &model::save, py::arg("path"))
      .def("info", &model::info);
  m.def("train", &train_pairs, py::arg("x"), py::arg("y"), py::arg("x_val"), py::arg("y_val"), py::arg("options"),
        py::arg("callback"), py::arg("warn"));
  m.def("select", &select_subset, py::arg("z"), py::arg("options"));
  m.def("set_threads", [](int n) { fusemix::cpu::set_threads(n); }, py::arg("n"));
  m.def(
      "data_address", [](const f32_array& a) { return reinterpret_cast<std::uintptr_t>(a.data()); }, py::arg("a"),
      "The address the library reads a float32 C-order array at (for the no-copy test).");
}
