// Argument checks shared by the binding files. Every failure raises ValueError / TypeError whose
// message names the op, the argument, its shape/dtype and what was expected; bindings never
// copy a wrongly laid-out array behind the caller's back.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <optional>
#include <string>
#include <vector>

#include "common/host_cache.h"

namespace deepcalc::bind {
namespace py = pybind11;

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  if (a.ndim() == 1) s += ",";
  return s + ")";
}

inline std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

// Typed data pointers of an array whose dtype the caller has checked.
template <typename T> const T* cptr(const py::array& a) { return static_cast<const T*>(a.data()); }
template <typename T> T* mptr(py::array& a) { return static_cast<T*>(a.mutable_data()); }
template <typename T> const T* cptr(const std::optional<py::array>& a) { return a ? cptr<T>(*a) : nullptr; }

inline bool is_f32(const py::array& a) { return a.dtype().is(py::dtype::of<float>()); }
inline bool is_f64(const py::array& a) { return a.dtype().is(py::dtype::of<double>()); }

inline void require_float(const char* op, const char* arg, const py::array& a) {
  if (!is_f32(a) && !is_f64(a))
    throw py::type_error(std::string(op) + ": " + arg + " must be float32 or float64, got " +
                         dtype_str(a) + " with shape " + shape_str(a));
}

inline void require_same_dtype(const char* op, const char* arg, const py::array& a,
                               const char* ref_arg, const py::array& ref) {
  if (!a.dtype().is(ref.dtype()))
    throw py::type_error(std::string(op) + ": " + arg + " is " + dtype_str(a) + " but " + ref_arg +
                         " is " + dtype_str(ref) + "; deepcalc never mixes float32 and float64");
}

inline void require_contiguous(const char* op, const char* arg, const py::array& a) {
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(op) + ": " + arg + " with shape " + shape_str(a) +
                          " must be C-contiguous");
}

inline void require_writeable(const char* op, const char* arg, const py::array& a) {
  if (!a.writeable())
    throw py::value_error(std::string(op) + ": " + arg + " with shape " + shape_str(a) +
                          " must be writeable");
}

inline void require_same_shape(const char* op, const char* arg, const py::array& a,
                               const char* ref_arg, const py::array& ref) {
  bool same = a.ndim() == ref.ndim();
  for (py::ssize_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == ref.shape(i);
  if (!same)
    throw py::value_error(std::string(op) + ": " + arg + " has shape " + shape_str(a) +
                          ", expected the shape of " + ref_arg + " " + shape_str(ref));
}

// Whether the bytes a and b span intersect (a conservative test on their extents). A kernel that
// writes one array while reading another must not be handed overlapping memory: it would read
// values it has already overwritten.
inline bool may_overlap(const py::array& a, const py::array& b) {
  if (a.size() == 0 || b.size() == 0) return false;
  auto extent = [](const py::array& x, const char*& lo, const char*& hi) {
    lo = hi = static_cast<const char*>(x.data());
    for (py::ssize_t i = 0; i < x.ndim(); ++i) {
      const py::ssize_t span = x.strides(i) * (x.shape(i) - 1);
      (span < 0 ? lo : hi) += span;
    }
    hi += x.itemsize();
  };
  const char *alo, *ahi, *blo, *bhi;
  extent(a, alo, ahi);
  extent(b, blo, bhi);
  return alo < bhi && blo < ahi;
}

inline void require_no_overlap(const char* op, const char* arg, const py::array& a,
                               const char* other_arg, const py::array& other) {
  if (may_overlap(a, other))
    throw py::value_error(std::string(op) + ": " + arg + " with shape " + shape_str(a) +
                          " overlaps " + other_arg + " with shape " + shape_str(other) +
                          " in memory; pass separate arrays");
}

// An uninitialized C-contiguous output array. Large ones take their memory from the kernels'
// host cache (common/host_cache.h): the array's base is a capsule that hands the block back to
// the cache when NumPy frees the array, so the next step's output of that size costs no page
// faults. Small ones are plain NumPy allocations.
inline py::array new_array(const py::dtype& dt, const std::vector<py::ssize_t>& shape) {
  std::size_t count = 1;
  for (py::ssize_t s : shape) count *= std::size_t(s);
  std::size_t block_bytes = 0;
  void* p = host_cache_acquire(count * std::size_t(dt.itemsize()), &block_bytes);
  if (!p) return py::array(dt, shape);
  struct Block {
    void* ptr;
    std::size_t bytes;
  };
  py::capsule owner(new Block{p, block_bytes}, [](void* b) {
    auto* block = static_cast<Block*>(b);
    host_cache_release(block->ptr, block->bytes);
    delete block;
  });
  return py::array(dt, shape, p, owner);
}

inline py::array empty_like(const py::array& a) {
  return new_array(a.dtype(), std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
}

}  // namespace deepcalc::bind
