// Hardware constants in one place: the cache sizes the kernels are blocked for (Zen 4, where
// the blocking was measured) and the thread grains below which another thread costs more to wake
// than it saves. Kernels and bindings read these; nothing else declares a cache size.
#pragma once
#include <cstdint>

namespace deepcalc::hw {

// Zen 4, per core: 32 KiB L1d, 1 MiB L2; 32 MiB L3 shared by a CCD's cores.
constexpr int64_t kL1dBytes = int64_t(32) << 10;
constexpr int64_t kL2Bytes = int64_t(1) << 20;
constexpr int64_t kL3Bytes = int64_t(32) << 20;

// Packed GEMM footprints, in bytes so every tile and type gets the same (measured; see
// gemm_simd.h): a packed B micro-panel (KC x NR) streamed from L2 through L1, the packed A block
// (MC x KC) kept in L2 beside it, the packed B block (KC x NC) kept in L3.
constexpr int64_t kGemmPanelBytes = int64_t(64) << 10;
constexpr int64_t kGemmABlockBytes = int64_t(384) << 10;
constexpr int64_t kGemmBBlockBytes = int64_t(4) << 20;
static_assert(kGemmABlockBytes + kGemmPanelBytes <= kL2Bytes, "A block + B panel must fit L2");
static_assert(kGemmBBlockBytes <= kL3Bytes, "B block must fit L3");
// The unpacked (direct) GEMM walks B in place; beyond this much B it misses caches (see
// gemm_direct_simd.h).
constexpr int64_t kGemmDirectMaxBBytes = int64_t(4) << 20;

// Thread grains: work per thread, at least (common/threads.h ThreadBudget(work, grain)).
constexpr int64_t kGemmGrain = int64_t(1) << 17;     // multiply-adds; 64^3 still splits in two
constexpr int64_t kNormGrain = 32768;                // elements
constexpr int64_t kSoftmaxGrain = 16384;             // elements
constexpr int64_t kElementwiseGrain = 32768;         // elements (activation backward, erf)
constexpr int64_t kOptimParallelMin = int64_t(1) << 16;  // elements; below, a step runs on one thread
// Inside the packed GEMM: below kGemmSerialFlops one thread is faster than waking a second;
// batched GEMMs below kGemmPerBatchParallelFlops run one whole GEMM per thread.
constexpr double kGemmSerialFlops = 2.0 * 48 * 48 * 48;
constexpr double kGemmPerBatchParallelFlops = 2.0 * 160 * 160 * 160;
constexpr double kGemvSerialFlops = 2.0 * 128 * 1024;  // matrix-vector products run on one thread below
constexpr int64_t kActBackwardSerial = 16384;          // elements; the fused activation backward likewise

}  // namespace deepcalc::hw
