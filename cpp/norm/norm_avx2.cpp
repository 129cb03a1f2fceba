// AVX2 instantiation of the SIMD BatchNorm / LayerNorm kernels and their JVP kernels
// (compiled with -mavx2 ...).
#include "common/vec_avx2.h"
#include "norm/norm.h"
#include "norm/norm_jvp_simd.h"
#include "norm/norm_simd.h"

namespace deepcalc {

DEEPCALC_NORM_DEFINE(avx2, vec256::F32)
DEEPCALC_NORM_JVP_DEFINE(avx2)

}  // namespace deepcalc
