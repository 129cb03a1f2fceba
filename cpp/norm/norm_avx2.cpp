// AVX2 instantiation of the SIMD BatchNorm / LayerNorm kernels (compiled with -mavx2 ...).
#include "common/vec_avx2.h"
#include "norm/norm.h"
#include "norm/norm_simd.h"

namespace deepcalc {

DEEPCALC_NORM_DEFINE(avx2, vec256::F32)

}  // namespace deepcalc
