// AVX-512 instantiation of the SIMD BatchNorm / LayerNorm kernels and their JVP kernels
// (compiled with -mavx512f ...).
#include "common/vec_avx512.h"
#include "norm/norm.h"
#include "norm/norm_jvp_simd.h"
#include "norm/norm_simd.h"

namespace deepcalc {

DEEPCALC_NORM_DEFINE(avx512, vec512::F32)
DEEPCALC_NORM_JVP_DEFINE(avx512)

}  // namespace deepcalc
