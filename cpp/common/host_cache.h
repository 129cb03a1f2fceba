// A caching allocator for the large output buffers the kernels write (activations, gradients,
// normalized tensors). Training repeats the same shapes every step; handing a freed buffer back
// to the next call of the same size skips the operating system's page faults and zero-filling,
// which for a 16 MiB tensor cost more than the kernel that fills it (about 4096 faults).
//
// Contract:
// - host_cache_acquire(bytes) returns a 64-byte aligned block of at least `bytes` bytes, or
//   nullptr when the cache is disabled (limit 0) or the request is below kMinCachedBytes; the
//   caller then allocates normally. The block's real size is written to *block_bytes.
// - host_cache_release(ptr, block_bytes) takes a block back from host_cache_acquire. It keeps
//   it for reuse while the idle total stays within the limit, evicting the least recently
//   released blocks first, and frees it otherwise.
// - A request reuses an idle block of size in [rounded, rounded * 9/8] (rounded = bytes up to a
//   page), so near shapes share blocks and waste stays under 12.5%.
// - Thread-safe. The default limit is 2 GiB of idle blocks, or DEEPCALC_HOST_CACHE_MB at start.
#pragma once
#include <cstddef>
#include <cstdint>

namespace deepcalc {

constexpr std::size_t kMinCachedBytes = std::size_t(256) << 10;

void* host_cache_acquire(std::size_t bytes, std::size_t* block_bytes);
void host_cache_release(void* ptr, std::size_t block_bytes);

// Frees every idle block (live blocks come back and are cached as usual).
void host_cache_empty();
// Limit on idle bytes; 0 disables caching (and frees what is idle).
void host_cache_set_limit(std::size_t bytes);

struct HostCacheStats {
  std::size_t idle_bytes, live_bytes, limit_bytes;
  std::int64_t idle_blocks, hits, misses, evictions;
};
HostCacheStats host_cache_stats();

}  // namespace deepcalc
