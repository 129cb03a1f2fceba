#include "common/host_cache.h"

#include <cstdlib>
#include <map>
#include <mutex>

namespace deepcalc {
namespace {

constexpr std::size_t kPage = 4096;
constexpr std::size_t kAlign = 64;

struct Idle {
  void* ptr;
  std::uint64_t stamp;  // release order, for least-recently-released eviction
};

struct Cache {
  std::mutex mu;
  std::multimap<std::size_t, Idle> idle;  // block size -> idle block
  std::size_t idle_bytes = 0, live_bytes = 0, limit;
  std::uint64_t clock = 0;
  std::int64_t hits = 0, misses = 0, evictions = 0;

  Cache() : limit(std::size_t(2048) << 20) {
    if (const char* env = std::getenv("DEEPCALC_HOST_CACHE_MB")) {
      char* end = nullptr;
      const long long mb = std::strtoll(env, &end, 10);
      if (end != env && *end == '\0' && mb >= 0) limit = std::size_t(mb) << 20;
    }
  }

  // Frees least recently released idle blocks until idle_bytes + incoming <= limit.
  void evict_for(std::size_t incoming) {
    while (!idle.empty() && idle_bytes + incoming > limit) {
      auto oldest = idle.begin();
      for (auto it = idle.begin(); it != idle.end(); ++it)
        if (it->second.stamp < oldest->second.stamp) oldest = it;
      std::free(oldest->second.ptr);
      idle_bytes -= oldest->first;
      idle.erase(oldest);
      ++evictions;
    }
  }
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: arrays may be released during interpreter exit
  return *c;
}

}  // namespace

void* host_cache_acquire(std::size_t bytes, std::size_t* block_bytes) {
  if (bytes < kMinCachedBytes) return nullptr;
  Cache& c = cache();
  const std::size_t rounded = (bytes + kPage - 1) / kPage * kPage;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.limit == 0) return nullptr;
    auto it = c.idle.lower_bound(rounded);
    if (it != c.idle.end() && it->first <= rounded + rounded / 8) {
      void* p = it->second.ptr;
      *block_bytes = it->first;
      c.idle_bytes -= it->first;
      c.live_bytes += it->first;
      c.idle.erase(it);
      ++c.hits;
      return p;
    }
    ++c.misses;
  }
  void* p = std::aligned_alloc(kAlign, rounded);
  if (!p) {  // give the idle blocks back to the system and try once more
    host_cache_empty();
    p = std::aligned_alloc(kAlign, rounded);
    if (!p) return nullptr;
  }
  std::lock_guard<std::mutex> lock(c.mu);
  c.live_bytes += rounded;
  *block_bytes = rounded;
  return p;
}

void host_cache_release(void* ptr, std::size_t block_bytes) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.live_bytes -= block_bytes;
  if (block_bytes > c.limit) {
    std::free(ptr);
    return;
  }
  c.evict_for(block_bytes);
  c.idle.emplace(block_bytes, Idle{ptr, ++c.clock});
  c.idle_bytes += block_bytes;
}

void host_cache_empty() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto& kv : c.idle) std::free(kv.second.ptr);
  c.idle.clear();
  c.idle_bytes = 0;
}

void host_cache_set_limit(std::size_t bytes) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.limit = bytes;
  c.evict_for(0);
}

HostCacheStats host_cache_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return {c.idle_bytes, c.live_bytes, c.limit, std::int64_t(c.idle.size()),
          c.hits, c.misses, c.evictions};
}

}  // namespace deepcalc
