// AVX-512 instantiation of the SIMD BatchNorm / LayerNorm kernels (compiled with -mavx512f ...).
#include "common/vec_avx512.h"
#include "norm/norm.h"
#include "norm/norm_simd.h"

namespace deepcalc {

DEEPCALC_NORM_DEFINE(avx512, vec512::F32)

}  // namespace deepcalc
