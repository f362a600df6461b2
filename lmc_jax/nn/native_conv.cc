// Convolutions (NHWC input, HWIO kernel, float32, any strides) for XLA's CPU backend,
// through XLA's FFI. lmc_jax compiles this file on first use (lmc_jax/nn/native_conv.py)
// for the machine it runs on and calls it from `jax.jit`.
//
// Two kernels, each over G independent convolutions (a zoo's models: the leading axes that
// `vmap` adds):
//   lmc_conv_forward:     y[g,n,a,b,o] = sum_{i,j,c} xp[g,n,sh*a+i,sw*b+j,c] * w[g,i,j,c,o]
//   lmc_conv_kernel_grad: dw[g,i,j,c,o] = sum_{n,a,b} xp[g,n,sh*a+i,sw*b+j,c] * dy[g,n,a,b,o]
// where xp is x zero-padded by (pad_top, pad_bottom, pad_left, pad_right). At stride 1 the
// input gradient is the forward kernel applied to dy with the kernel flipped and
// transposed (done in Python); at larger strides it stays XLA's.
//
// Both copy an image into a zero-padded buffer whose rows hold Wp = W + max(pl, pr) pixels
// (one row's right padding is the next row's left). At stride 1 output pixel (a, b) is
// then flat position q = a*Wp + b and tap (i, j) reads flat pixel q + i*Wp + j: outputs are
// computed in runs of consecutive q (the few columns b >= OW in between computed and
// dropped), every tap one contiguous read. Otherwise (strides, or narrow images where the
// dropped columns would cost more) positions are the output pixels and each reads the
// pixel a table gives. Registers hold a tile of outputs (positions x output channels, the
// channels one SIMD vector each) and the kernel loops over the taps and input channels,
// broadcasting one input value per position: a direct convolution, as oneDNN's. Images
// are split over XLA's own intra-op thread pool; small images go in groups, so that a
// block of the kernel, once in cache, serves a few hundred positions. 3x3 stride-1 layers
// with 32+ channels in and out take Winograd's algorithms instead (the section below).

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <thread>
#include <type_traits>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
constexpr int kRegisters = 32;
#elif defined(__AVX__)
constexpr int kLanes = 8;
constexpr int kRegisters = 16;
#else
constexpr int kLanes = 4;
constexpr int kRegisters = 16;
#endif

typedef float Vec __attribute__((vector_size(kLanes * 4)));
typedef float UnalignedVec __attribute__((vector_size(kLanes * 4), aligned(4)));

inline Vec Load(const float* p) { return *reinterpret_cast<const UnalignedVec*>(p); }
inline void Store(float* p, Vec v) { *reinterpret_cast<UnalignedVec*>(p) = v; }
// The first n (<= kLanes) floats: stored from v; loaded from p (null: zeros), the rest 0.
inline void StoreFirst(float* p, Vec v, int64_t n) {
  if (n >= kLanes) return Store(p, v);
  float tmp[kLanes];
  Store(tmp, v);
  std::memcpy(p, tmp, n * sizeof(float));
}
inline Vec LoadFirst(const float* p, int64_t n) {
  if (p == nullptr) return Vec{};
  if (n >= kLanes) return Load(p);
  float tmp[kLanes] = {};
  std::memcpy(tmp, p, n * sizeof(float));
  return Load(tmp);
}

using Dims = ffi::Span<const int64_t>;

int64_t RoundUp(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// Runs body(item) for item in [0, items) on the caller and `workers` - 1 pool tasks;
// returns when every item is done. A task that starts after the last item was taken
// returns without touching anything.
template <typename Body>
void ParallelFor(ffi::ThreadPool& pool, int64_t items, int workers, Body& body) {
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  auto state = std::make_shared<State>();
  auto work = [state, items, &body] {
    for (int64_t item; (item = state->next.fetch_add(1)) < items;) {
      body(item);
      state->done.fetch_add(1, std::memory_order_release);
    }
  };
  for (int worker = 1; worker < workers; ++worker) {
    auto task = work;  // each task owns a copy (state shared)
    pool.Schedule(std::move(task));
  }
  work();
  while (state->done.load(std::memory_order_acquire) < items) std::this_thread::yield();
}

int Workers(ffi::ThreadPool& pool, int64_t items) {
  int64_t threads = std::max<int64_t>(1, pool.num_threads());
  return static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(1, items)));
}

struct Geometry {
  int64_t G, N, H, W, C, KH, KW, O, SH, SW, OH, OW;
  int64_t pad_top, pad_left, Hp, Wp;
  // Stride 1: output positions run over the padded grid (Q = OH * Wp, the columns
  // b >= OW computed and dropped) and position q reads input pixel q. Otherwise positions
  // are the output pixels (Q = OH * OW) and q reads input pixel Position(q).
  bool dense = false;  // positions are output pixels even at stride 1
  bool Flat() const { return SH == 1 && SW == 1 && !dense; }
  int64_t Q() const { return OH * (Flat() ? Wp : OW); }
  int64_t RowPitch() const { return Flat() ? Wp : OW; }
  int64_t Position(int64_t q) const {
    if (Flat()) return q;
    const int64_t a = q / OW, b = q - a * OW;
    return SH * a * Wp + SW * b;
  }
  // Padded-image pixels to allocate: every read of either kernel, tails included.
  int64_t Pixels() const { return Hp * Wp + 32 + KW; }
};

// Copies image x[g, n] to data (Pixels() pixels, rows of Wp, `channels` >= C floats each) at
// row offset pad_top and column offset pad_left, with zeros everywhere else.
void PadImage(const float* x, const Geometry& s, int64_t channels, float* data) {
  const int64_t total = s.Pixels() * channels;
  const int64_t row = s.Wp * channels;
  std::memset(data, 0, s.pad_top * row * sizeof(float));
  for (int64_t h = 0; h < s.H; ++h) {
    const float* src = x + h * s.W * s.C;
    float* dst = data + (h + s.pad_top) * row;
    std::memset(dst, 0, s.pad_left * channels * sizeof(float));
    if (channels == s.C) {
      std::memcpy(dst + s.pad_left * channels, src, s.W * s.C * sizeof(float));
    } else {
      for (int64_t b = 0; b < s.W; ++b) {
        float* px = dst + (s.pad_left + b) * channels;
        std::memcpy(px, src + b * s.C, s.C * sizeof(float));
        std::memset(px + s.C, 0, (channels - s.C) * sizeof(float));
      }
    }
    const int64_t right = s.Wp - s.pad_left - s.W;
    std::memset(dst + (s.pad_left + s.W) * channels, 0, right * channels * sizeof(float));
  }
  const int64_t done = (s.pad_top + s.H) * row;
  std::memset(data + done, 0, (total - done) * sizeof(float));
}

// Images taken together where one alone has few output positions, so that each block of
// the kernel, once in cache, serves `positions` or more of them.
int64_t ImagesPerGroup(const Geometry& s, int64_t positions) {
  return std::max<int64_t>(1, std::min<int64_t>(16, (positions + s.Q() - 1) / s.Q()));
}

// Input pixel of every output position of `images` consecutive padded images (image b's
// pixels follow image b - 1's), and 32 more for tiles that run past the end.
void Positions(const Geometry& s, int64_t images, std::vector<int64_t>& pos) {
  pos.assign(images * s.Q() + 32, 0);
  for (int64_t b = 0; b < images; ++b)
    for (int64_t q = 0; q < s.Q(); ++q) pos[b * s.Q() + q] = b * s.Pixels() + s.Position(q);
}

// ----------------------------------------------------------------------------------------
// Forward: a tile of PIXELS consecutive output positions x VECS output-channel vectors,
// summed over input channels [c0, c1) on top of `sums` (positions x OP channels; from zero
// when c0 == 0), and written back to `sums`, or, for the last block of channels (y not
// null), to the output image y. GATHER: positions read input pixels pos[q] (strides).

template <int PIXELS, int VECS, bool GATHER, int STRIDE>
void ForwardTile(const float* __restrict xf, const float* __restrict wk, const Geometry& s,
                 const int64_t* pos, int64_t OP, int64_t q0, int64_t vec0, int64_t c0,
                 int64_t c1, float* __restrict sums, float* __restrict y) {
  Vec acc[PIXELS][VECS];
  float* out = sums + q0 * OP + vec0 * kLanes;
#pragma GCC unroll 32
  for (int p = 0; p < PIXELS; ++p)
#pragma GCC unroll 8
    for (int v = 0; v < VECS; ++v) acc[p][v] = c0 == 0 ? Vec{} : Load(out + p * OP + v * kLanes);
  int64_t base[GATHER ? PIXELS : 1];
  if constexpr (GATHER) {
    for (int p = 0; p < PIXELS; ++p) base[p] = pos[q0 + p] * s.C;
  }
  for (int64_t i = 0; i < s.KH; ++i) {
    for (int64_t j = 0; j < s.KW; ++j) {
      const float* wb = wk + (i * s.KW + j) * s.C * OP + vec0 * kLanes;
      if constexpr (GATHER) {
        const float* xb = xf + (i * s.Wp + j) * s.C;
        for (int64_t c = c0; c < c1; ++c) {
          Vec wv[VECS];
#pragma GCC unroll 8
          for (int v = 0; v < VECS; ++v) wv[v] = Load(wb + c * OP + v * kLanes);
#pragma GCC unroll 32
          for (int p = 0; p < PIXELS; ++p) {
            const float value = xb[base[p] + c];
#pragma GCC unroll 8
            for (int v = 0; v < VECS; ++v) acc[p][v] += value * wv[v];
          }
        }
      } else {
        // Consecutive positions are consecutive pixels, STRIDE (or C) floats apart: with
        // STRIDE known when compiled, every broadcast is at a fixed offset from one pointer.
        const int64_t stride = STRIDE ? STRIDE : s.C;
        const float* xb = xf + (q0 + i * s.Wp + j) * s.C + c0;
        for (int64_t c = c0; c < c1; ++c, ++xb) {
          Vec wv[VECS];
#pragma GCC unroll 8
          for (int v = 0; v < VECS; ++v) wv[v] = Load(wb + c * OP + v * kLanes);
#pragma GCC unroll 32
          for (int p = 0; p < PIXELS; ++p) {
            const float value = xb[p * stride];
#pragma GCC unroll 8
            for (int v = 0; v < VECS; ++v) acc[p][v] += value * wv[v];
          }
        }
      }
    }
  }
  if (y == nullptr) {
#pragma GCC unroll 32
    for (int p = 0; p < PIXELS; ++p)
#pragma GCC unroll 8
      for (int v = 0; v < VECS; ++v) Store(out + p * OP + v * kLanes, acc[p][v]);
    return;
  }
  // The last block of input channels: the finished sums go straight to y (OH, OW, O).
  int64_t a = q0 / s.Wp, b = q0 - a * s.Wp;  // flat positions: row and column
  for (int p = 0; p < PIXELS; ++p, ++b) {
    const int64_t q = q0 + p;
    float* dst;
    if constexpr (GATHER) {
      if (q >= s.Q()) break;
      dst = y + q * s.O;
    } else {
      if (b == s.Wp) b = 0, ++a;
      if (a >= s.OH) break;
      if (b >= s.OW) continue;
      dst = y + (a * s.OW + b) * s.O;
    }
    dst += vec0 * kLanes;
#pragma GCC unroll 8
    for (int v = 0; v < VECS; ++v) {
      const int64_t left = s.O - (vec0 + v) * kLanes;
      if (left > 0) StoreFirst(dst + v * kLanes, acc[p][v], left);
    }
  }
}

template <int VECS>
constexpr int ForwardPixels() {
  // Accumulators + kernel vectors + one broadcast fit the vector registers.
  return std::min(24, (kRegisters - VECS - 1) / VECS);
}

// One block of VECS output vectors for `images` images: xf, sums and y of image b at
// b * Pixels() * C, b * (Q + 32) * OP and b * OH * OW * O.
template <int VECS, bool GATHER>
void ForwardRun(const float* xf, const float* wk, const Geometry& s, const int64_t* pos,
                int64_t OP, int64_t vec0, int64_t images, float* sums, float* y) {
  constexpr int P = ForwardPixels<VECS>();
  // Input channels in blocks whose kernel slice (taps x block x VECS vectors) stays in
  // the core's cache while every output position passes over it.
  const int64_t most = std::max<int64_t>(
      8, (256 * 1024) / (s.KH * s.KW * VECS * kLanes * int64_t(sizeof(float))));
  const int64_t blocks = (s.C + most - 1) / most;
  const int64_t block = (s.C + blocks - 1) / blocks;  // even blocks
  for (int64_t c0 = 0; c0 < s.C; c0 += block) {
    const int64_t c1 = std::min(s.C, c0 + block);
    auto run = [&](auto stride) {
      for (int64_t b = 0; b < images; ++b) {
        const float* xb = xf + b * s.Pixels() * s.C;
        float* sb = sums + b * (s.Q() + 32) * OP;
        float* out = c1 == s.C ? y + b * s.OH * s.OW * s.O : nullptr;
        for (int64_t q0 = 0; q0 < s.Q(); q0 += P)
          ForwardTile<P, VECS, GATHER, decltype(stride)::value>(xb, wk, s, pos, OP, q0, vec0,
                                                                c0, c1, sb, out);
      }
    };
    if constexpr (GATHER) {
      run(std::integral_constant<int, 0>{});
    } else {
      switch (s.C) {  // the usual channel counts, with their pixel stride compiled in
        case 16: run(std::integral_constant<int, 16>{}); break;
        case 32: run(std::integral_constant<int, 32>{}); break;
        case 64: run(std::integral_constant<int, 64>{}); break;
        case 128: run(std::integral_constant<int, 128>{}); break;
        case 256: run(std::integral_constant<int, 256>{}); break;
        default: run(std::integral_constant<int, 0>{}); break;
      }
    }
  }
}

template <bool GATHER>
void ForwardVectors(const float* xf, const float* wk, const Geometry& s, const int64_t* pos,
                    int64_t OP, int64_t images, float* sums, float* y) {
  const int64_t vectors = OP / kLanes;
  const int max_vecs = kRegisters >= 32 ? 4 : 2;
  for (int64_t v0 = 0; v0 < vectors;) {
    const int64_t vecs = std::min<int64_t>(max_vecs, vectors - v0);
    switch (vecs) {
      case 1: ForwardRun<1, GATHER>(xf, wk, s, pos, OP, v0, images, sums, y); break;
      case 2: ForwardRun<2, GATHER>(xf, wk, s, pos, OP, v0, images, sums, y); break;
      case 3: ForwardRun<3, GATHER>(xf, wk, s, pos, OP, v0, images, sums, y); break;
      default: ForwardRun<4, GATHER>(xf, wk, s, pos, OP, v0, images, sums, y); break;
    }
    v0 += vecs;
  }
}

// y of `images` consecutive images (OH, OW, O each) from their padded inputs xf; `sums` is
// scratch of (Q + 32) x OP floats per image for the partial sums of all but the last block
// of input channels.
void ForwardImages(const float* xf, const float* wk, const Geometry& s, const int64_t* pos,
                   int64_t OP, int64_t images, float* sums, float* y) {
  if (s.Flat()) {
    ForwardVectors<false>(xf, wk, s, pos, OP, images, sums, y);
  } else {
    ForwardVectors<true>(xf, wk, s, pos, OP, images, sums, y);
  }
}

// ----------------------------------------------------------------------------------------
// Kernel gradient: a tile of ROWS input channels x VECS output-channel vectors of one tap,
// accumulated over output positions [q_begin, q_end).

template <int ROWS, int VECS, bool GATHER>
void KernelGradTile(const float* __restrict xf, const float* __restrict dyf,
                    const int64_t* pos, int64_t CP, int64_t OP, int64_t q_begin,
                    int64_t q_end, int64_t offset, int64_t c0, int64_t vec0,
                    float* __restrict acc_out) {
  Vec acc[ROWS][VECS];
#pragma GCC unroll 32
  for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < VECS; ++v) acc[r][v] = Load(acc_out + (c0 + r) * OP + (vec0 + v) * kLanes);
  for (int64_t q = q_begin; q < q_end; ++q) {
    const float* xr = xf + ((GATHER ? pos[q] : q) + offset) * CP + c0;
    const float* dr = dyf + q * OP + vec0 * kLanes;
    Vec d[VECS];
#pragma GCC unroll 8
    for (int v = 0; v < VECS; ++v) d[v] = Load(dr + v * kLanes);
#pragma GCC unroll 32
    for (int r = 0; r < ROWS; ++r) {
      const float value = xr[r];
#pragma GCC unroll 8
      for (int v = 0; v < VECS; ++v) acc[r][v] += value * d[v];
    }
  }
#pragma GCC unroll 32
  for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < VECS; ++v) Store(acc_out + (c0 + r) * OP + (vec0 + v) * kLanes, acc[r][v]);
}

constexpr int kChannelStep = 4;  // input channels are padded to a multiple of this
// The kernel gradient sums each model's images in this many chunks (fewer for fewer images):
// a fixed split, so that the sum's rounding does not depend on the threads.
constexpr int64_t kKernelGradChunks = 8;

// Largest tile of input channels for VECS vectors: a multiple of kChannelStep.
template <int VECS>
constexpr int KernelGradRows() {
  return std::min(24, (kRegisters - VECS - 2) / VECS / kChannelStep * kChannelStep);
}

// One tile of exactly `rows` channels (a multiple of kChannelStep, at most ROWS).
template <int VECS, bool GATHER, int ROWS = KernelGradRows<VECS>()>
void KernelGradLast(int64_t rows, const float* xf, const float* dyf, const int64_t* pos,
                    int64_t CP, int64_t OP, int64_t qb, int64_t qe, int64_t offset,
                    int64_t c0, int64_t vec0, float* acc) {
  if constexpr (ROWS >= kChannelStep) {
    if (rows == ROWS) {
      KernelGradTile<ROWS, VECS, GATHER>(xf, dyf, pos, CP, OP, qb, qe, offset, c0, vec0, acc);
    } else {
      KernelGradLast<VECS, GATHER, ROWS - kChannelStep>(rows, xf, dyf, pos, CP, OP, qb, qe,
                                                        offset, c0, vec0, acc);
    }
  }
}

template <int VECS, bool GATHER>
void KernelGradChannels(const float* xf, const float* dyf, const int64_t* pos, int64_t CP,
                        int64_t OP, int64_t qb, int64_t qe, int64_t offset, int64_t vec0,
                        float* acc) {
  constexpr int R = KernelGradRows<VECS>();
  int64_t c0 = 0;
  for (; c0 + R <= CP; c0 += R)
    KernelGradTile<R, VECS, GATHER>(xf, dyf, pos, CP, OP, qb, qe, offset, c0, vec0, acc);
  if (c0 < CP)
    KernelGradLast<VECS, GATHER>(CP - c0, xf, dyf, pos, CP, OP, qb, qe, offset, c0, vec0, acc);
}

// Adds to acc the kernel gradient of `positions` output positions whose output gradients
// are the rows of dyf and whose input pixels (tap (0, 0)) are pos[q] of xf.
template <bool GATHER>
void KernelGradImages(const float* xf, const float* dyf, const Geometry& s, const int64_t* pos,
                      int64_t CP, int64_t OP, int64_t positions, float* acc) {
  const int64_t vectors = OP / kLanes;
  const int max_vecs = kRegisters >= 32 ? 3 : 1;
  // One image's positions in chunks that stay in cache; a group's all at once.
  const int64_t chunk = positions > s.Q() ? positions : 256;
  for (int64_t qc = 0; qc < positions; qc += chunk) {
    const int64_t qe = std::min(positions, qc + chunk);
    for (int64_t i = 0; i < s.KH; ++i) {
      for (int64_t j = 0; j < s.KW; ++j) {
        float* tap = acc + (i * s.KW + j) * CP * OP;
        const int64_t offset = i * s.Wp + j;
        for (int64_t v0 = 0; v0 < vectors;) {
          const int64_t vecs = std::min<int64_t>(max_vecs, vectors - v0);
          switch (vecs) {
            case 1: KernelGradChannels<1, GATHER>(xf, dyf, pos, CP, OP, qc, qe, offset, v0, tap); break;
            case 2: KernelGradChannels<2, GATHER>(xf, dyf, pos, CP, OP, qc, qe, offset, v0, tap); break;
            default: KernelGradChannels<3, GATHER>(xf, dyf, pos, CP, OP, qc, qe, offset, v0, tap); break;
          }
          v0 += vecs;
        }
      }
    }
  }
}

// ----------------------------------------------------------------------------------------
// Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions with 32+ input and output channels:
// each 2x2 block of outputs (a tile) from the 4x4 block of padded input under it, with 16
// products per channel pair where the direct convolution has 36. With
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1]:
// U = G w G^T per (input, output) channel, V = B^T d B per (tile, input channel),
// M[e] = V[e] U[e] for each of the 16 elements e (a matrix product over input channels),
// and the tile's outputs A^T M A. Tiles go in chunks (their V and M stay near the core);
// each tile's outputs are computed by one thread in a fixed order, as the direct path's.

// Fewer channels: the transforms cost more than the products they save (measured).
constexpr int64_t kWinogradMinChannels = 32;

bool UsesWinograd(const Geometry& s) {
  return kRegisters >= 32 && s.KH == 3 && s.KW == 3 && s.SH == 1 && s.SW == 1 &&
         s.C >= kWinogradMinChannels && s.O >= kWinogradMinChannels;
}

// u (16, C, OP) of one model from its packed kernel wk (3, 3, C, OP).
void WinogradKernel(const float* wk, int64_t C, int64_t OP, float* u) {
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t o = 0; o < OP; o += kLanes) {
      Vec g[3][3], t[4][3];
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) g[i][j] = Load(wk + ((i * 3 + j) * C + c) * OP + o);
      for (int j = 0; j < 3; ++j) {  // t = G g
        t[0][j] = g[0][j];
        t[1][j] = (g[0][j] + g[1][j] + g[2][j]) * 0.5f;
        t[2][j] = (g[0][j] - g[1][j] + g[2][j]) * 0.5f;
        t[3][j] = g[2][j];
      }
      for (int i = 0; i < 4; ++i) {  // u = t G^T
        const Vec r[4] = {t[i][0], (t[i][0] + t[i][1] + t[i][2]) * 0.5f,
                          (t[i][0] - t[i][1] + t[i][2]) * 0.5f, t[i][2]};
        for (int j = 0; j < 4; ++j) Store(u + ((i * 4 + j) * C + c) * OP + o, r[j]);
      }
    }
  }
}

struct WinogradTiles {
  int64_t TH, TW;  // tiles per image: down, across
  int64_t Per() const { return TH * TW; }
};

// v (16, rows, pitch >= C) rows [0, count) for tiles [t0, t0 + count) of image stack x
// (N, H, W, C); rows [count, rows) and channels [C, pitch) zero. A 4x4 block's pixels
// outside the image read as zeros.
void WinogradInputs(const float* x, const Geometry& s, const WinogradTiles& wt, int64_t t0,
                    int64_t count, int64_t rows, int64_t pitch, float* v) {
  const int64_t plane = rows * pitch;
  for (int64_t k = 0; k < count; ++k) {
    const int64_t t = t0 + k, n = t / wt.Per(), r = t - n * wt.Per();
    const int64_t ty = r / wt.TW, tx = r - ty * wt.TW;
    const float* px[4][4];
    for (int i = 0; i < 4; ++i) {
      const int64_t h = 2 * ty + i - s.pad_top;
      for (int j = 0; j < 4; ++j) {
        const int64_t w = 2 * tx + j - s.pad_left;
        px[i][j] = h >= 0 && h < s.H && w >= 0 && w < s.W ? x + ((n * s.H + h) * s.W + w) * s.C
                                                          : nullptr;
      }
    }
    float* out = v + k * pitch;
    if (pitch > s.C)
      for (int e = 0; e < 16; ++e)
        std::memset(out + e * plane + s.C, 0, (pitch - s.C) * sizeof(float));
    for (int64_t c = 0; c < s.C; c += kLanes) {
      Vec d[4][4], t4[4][4];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) d[i][j] = LoadFirst(px[i][j] ? px[i][j] + c : nullptr, s.C - c);
      for (int j = 0; j < 4; ++j) {  // B^T d
        t4[0][j] = d[0][j] - d[2][j];
        t4[1][j] = d[1][j] + d[2][j];
        t4[2][j] = d[2][j] - d[1][j];
        t4[3][j] = d[1][j] - d[3][j];
      }
      for (int i = 0; i < 4; ++i) {  // (B^T d) B
        const Vec r4[4] = {t4[i][0] - t4[i][2], t4[i][1] + t4[i][2], t4[i][2] - t4[i][1],
                           t4[i][1] - t4[i][3]};
        for (int j = 0; j < 4; ++j) StoreFirst(out + (i * 4 + j) * plane + c, r4[j], s.C - c);
      }
    }
  }
  for (int e = 0; e < 16; ++e)
    std::memset(v + e * plane + count * pitch, 0, (rows - count) * pitch * sizeof(float));
}

// m[t0 .. t0 + P) x VECS vectors from vec0 = v[t0 .. t0 + P) (rows of C) times u (C, OP),
// for one element e. STRIDE: C when compiled in (0: read s.C).
template <int P, int VECS, int STRIDE>
void WinogradTile(const float* __restrict v, const float* __restrict u, int64_t C, int64_t OP,
                  int64_t t0, int64_t vec0, float* __restrict m) {
  Vec acc[P][VECS];
#pragma GCC unroll 32
  for (int p = 0; p < P; ++p)
#pragma GCC unroll 8
    for (int k = 0; k < VECS; ++k) acc[p][k] = Vec{};
  const int64_t stride = STRIDE ? STRIDE : C;
  const float* vb = v + t0 * stride;
  const float* ub = u + vec0 * kLanes;
  for (int64_t c = 0; c < C; ++c, ++vb) {
    Vec uv[VECS];
#pragma GCC unroll 8
    for (int k = 0; k < VECS; ++k) uv[k] = Load(ub + c * OP + k * kLanes);
#pragma GCC unroll 32
    for (int p = 0; p < P; ++p) {
      const float value = vb[p * stride];
#pragma GCC unroll 8
      for (int k = 0; k < VECS; ++k) acc[p][k] += value * uv[k];
    }
  }
  float* out = m + t0 * OP + vec0 * kLanes;
#pragma GCC unroll 32
  for (int p = 0; p < P; ++p)
#pragma GCC unroll 8
    for (int k = 0; k < VECS; ++k) Store(out + p * OP + k * kLanes, acc[p][k]);
}

// m (16, rows, OP) = v (16, rows, C) times u (16, C, OP), element by element; rows is a
// multiple of every tile height used (WinogradRowStep).
template <int STRIDE>
void WinogradProducts(const float* v, const float* u, int64_t C, int64_t OP, int64_t rows,
                      float* m) {
  const int64_t vectors = OP / kLanes;
  for (int e = 0; e < 16; ++e) {
    const float* ve = v + e * rows * C;
    const float* ue = u + e * C * OP;
    float* me = m + e * rows * OP;
    for (int64_t v0 = 0; v0 < vectors;) {
      const int64_t vecs = std::min<int64_t>(4, vectors - v0);
      switch (vecs) {
        case 1:
          for (int64_t t = 0; t < rows; t += ForwardPixels<1>())
            WinogradTile<ForwardPixels<1>(), 1, STRIDE>(ve, ue, C, OP, t, v0, me);
          break;
        case 2:
          for (int64_t t = 0; t < rows; t += ForwardPixels<2>())
            WinogradTile<ForwardPixels<2>(), 2, STRIDE>(ve, ue, C, OP, t, v0, me);
          break;
        case 3:
          for (int64_t t = 0; t < rows; t += ForwardPixels<3>())
            WinogradTile<ForwardPixels<3>(), 3, STRIDE>(ve, ue, C, OP, t, v0, me);
          break;
        default:
          for (int64_t t = 0; t < rows; t += ForwardPixels<4>())
            WinogradTile<ForwardPixels<4>(), 4, STRIDE>(ve, ue, C, OP, t, v0, me);
          break;
      }
      v0 += vecs;
    }
  }
}

// The tile heights WinogradProducts uses for OP output channels all divide this.
int64_t WinogradRowStep(int64_t OP) {
  const int64_t vectors = OP / kLanes;
  const int64_t heights[5] = {0, ForwardPixels<1>(), ForwardPixels<2>(), ForwardPixels<3>(),
                              ForwardPixels<4>()};
  int64_t step = vectors >= 4 ? heights[4] : heights[vectors];
  if (vectors > 4 && vectors % 4) step = std::lcm(step, heights[vectors % 4]);
  return step;
}

// Outputs of tiles [t0, t0 + count) into y (N, OH, OW, O) from m (16, rows, OP).
void WinogradOutputs(const float* m, const Geometry& s, const WinogradTiles& wt, int64_t t0,
                     int64_t count, int64_t rows, int64_t OP, float* y) {
  const int64_t plane = rows * OP;
  for (int64_t k = 0; k < count; ++k) {
    const int64_t t = t0 + k, n = t / wt.Per(), r = t - n * wt.Per();
    const int64_t ty = r / wt.TW, tx = r - ty * wt.TW;
    const float* in = m + k * OP;
    for (int64_t o = 0; o < OP; o += kLanes) {
      Vec q[4][4], s2[2][4];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) q[i][j] = Load(in + (i * 4 + j) * plane + o);
      for (int j = 0; j < 4; ++j) {  // A^T M
        s2[0][j] = q[0][j] + q[1][j] + q[2][j];
        s2[1][j] = q[1][j] - q[2][j] - q[3][j];
      }
      for (int i = 0; i < 2; ++i) {  // (A^T M) A
        const int64_t a = 2 * ty + i;
        if (a >= s.OH) break;
        const Vec out[2] = {s2[i][0] + s2[i][1] + s2[i][2], s2[i][1] - s2[i][2] - s2[i][3]};
        for (int j = 0; j < 2; ++j) {
          const int64_t b = 2 * tx + j;
          if (b >= s.OW) break;
          StoreFirst(y + ((n * s.OH + a) * s.OW + b) * s.O + o, out[j], s.O - o);
        }
      }
    }
  }
}

// The forward convolution of every model by Winograd: wk the packed kernels (G, 3, 3, C,
// OP), x (G, N, H, W, C), y (G, N, OH, OW, O).
void WinogradForward(ffi::ThreadPool& pool, const Geometry& s, const float* wk, int64_t OP,
                     const float* x, float* y) {
  const int64_t C = s.C;
  std::vector<float> u(s.G * 16 * C * OP);
  auto kernel = [&](int64_t g) {
    WinogradKernel(wk + g * 9 * C * OP, C, OP, u.data() + g * 16 * C * OP);
  };
  ParallelFor(pool, s.G, Workers(pool, s.G), kernel);
  const WinogradTiles wt{(s.OH + 1) / 2, (s.OW + 1) / 2};
  const int64_t tiles = s.N * wt.Per();
  // A chunk's transformed inputs take at least as many bytes as one model's transformed
  // kernel (whose every element is read once per chunk) and 384 KiB.
  const int64_t step = WinogradRowStep(OP);
  const int64_t bytes = std::max<int64_t>(384 * 1024, 16 * C * OP * int64_t(sizeof(float)));
  const int64_t per_chunk = std::min(
      RoundUp(tiles, step), RoundUp(std::max<int64_t>(1, bytes / (16 * C * 4)), step));
  const int64_t chunks = (tiles + per_chunk - 1) / per_chunk;
  auto body = [&](int64_t item) {
    thread_local std::vector<float> v, m;
    const int64_t g = item / chunks, t0 = (item - g * chunks) * per_chunk;
    const int64_t count = std::min(per_chunk, tiles - t0);
    const int64_t rows = RoundUp(count, step);
    v.resize(16 * rows * C);
    m.resize(16 * rows * OP);
    WinogradInputs(x + g * s.N * s.H * s.W * C, s, wt, t0, count, rows, C, v.data());
    const float* ug = u.data() + g * 16 * C * OP;
    switch (C) {
      case 32: WinogradProducts<32>(v.data(), ug, C, OP, rows, m.data()); break;
      case 64: WinogradProducts<64>(v.data(), ug, C, OP, rows, m.data()); break;
      case 128: WinogradProducts<128>(v.data(), ug, C, OP, rows, m.data()); break;
      case 256: WinogradProducts<256>(v.data(), ug, C, OP, rows, m.data()); break;
      default: WinogradProducts<0>(v.data(), ug, C, OP, rows, m.data()); break;
    }
    WinogradOutputs(m.data(), s, wt, t0, count, rows, OP, y + g * s.N * s.OH * s.OW * s.O);
  };
  const int64_t items = s.G * chunks;
  ParallelFor(pool, items, Workers(pool, items), body);
}

// The kernel gradient by Winograd F(3x3, 2x2): the 3x3 gradient is a correlation of each
// 4x4 input block with the 2x2 output gradient over it, so with the forward's B^T (whose
// last row is negated here against the textbook's, and G's last row with it):
//   G' = [1 0; .5 .5; .5 -.5; 0 -1],  A'^T = [1 1 1 0; 0 1 -1 0; 0 1 1 1],
// D = G' dy G'^T per (tile, output channel), M[e] = sum over tiles of V[e]^T D[e] (a matrix
// product over tiles, on the direct kernel gradient's register tiles), dw = A'^T M A'.

// d (16, rows, OP) rows [0, count) for tiles [t0, t0 + count) of output gradients dy
// (N, OH, OW, O); rows [count, rows) and channels [O, OP) zero.
void WinogradGradients(const float* dy, const Geometry& s, const WinogradTiles& wt,
                       int64_t t0, int64_t count, int64_t rows, int64_t OP, float* d) {
  const int64_t plane = rows * OP;
  for (int64_t k = 0; k < count; ++k) {
    const int64_t t = t0 + k, n = t / wt.Per(), r = t - n * wt.Per();
    const int64_t ty = r / wt.TW, tx = r - ty * wt.TW;
    const float* px[2][2];
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) {
        const int64_t a = 2 * ty + i, b = 2 * tx + j;
        px[i][j] = a < s.OH && b < s.OW ? dy + ((n * s.OH + a) * s.OW + b) * s.O : nullptr;
      }
    float* out = d + k * OP;
    for (int64_t o = 0; o < OP; o += kLanes) {
      Vec q[2][2], t2[4][2];
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j)
          q[i][j] = LoadFirst(px[i][j] ? px[i][j] + o : nullptr, s.O - o);
      for (int j = 0; j < 2; ++j) {  // G' dy
        t2[0][j] = q[0][j];
        t2[1][j] = (q[0][j] + q[1][j]) * 0.5f;
        t2[2][j] = (q[0][j] - q[1][j]) * 0.5f;
        t2[3][j] = -q[1][j];
      }
      for (int i = 0; i < 4; ++i) {  // (G' dy) G'^T
        const Vec r4[4] = {t2[i][0], (t2[i][0] + t2[i][1]) * 0.5f,
                           (t2[i][0] - t2[i][1]) * 0.5f, -t2[i][1]};
        for (int j = 0; j < 4; ++j) Store(out + (i * 4 + j) * plane + o, r4[j]);
      }
    }
  }
  for (int e = 0; e < 16; ++e)
    std::memset(d + e * plane + count * OP, 0, (rows - count) * OP * sizeof(float));
}

// Adds to m (16, CP, OP) the products of `rows` transformed tiles: v (16, rows, CP) and
// d (16, rows, OP).
void WinogradGradProducts(const float* v, const float* d, int64_t CP, int64_t OP,
                          int64_t rows, float* m) {
  const int64_t vectors = OP / kLanes;
  for (int e = 0; e < 16; ++e) {
    const float* ve = v + e * rows * CP;
    const float* de = d + e * rows * OP;
    float* me = m + e * CP * OP;
    for (int64_t v0 = 0; v0 < vectors;) {
      const int64_t vecs = std::min<int64_t>(3, vectors - v0);
      switch (vecs) {
        case 1: KernelGradChannels<1, false>(ve, de, nullptr, CP, OP, 0, rows, 0, v0, me); break;
        case 2: KernelGradChannels<2, false>(ve, de, nullptr, CP, OP, 0, rows, 0, v0, me); break;
        default: KernelGradChannels<3, false>(ve, de, nullptr, CP, OP, 0, rows, 0, v0, me); break;
      }
      v0 += vecs;
    }
  }
}

// dw (G, 3, 3, C, O) of every model: each model's images in `chunks` fixed chunks, each
// summed in the transformed domain in its own buffer, the buffers added in chunk order and
// transformed back: the result does not depend on the threads.
void WinogradKernelGrad(ffi::ThreadPool& pool, const Geometry& s, const float* x,
                        const float* dy, float* dw) {
  const int64_t CP = RoundUp(s.C, kChannelStep), OP = RoundUp(s.O, kLanes);
  const int64_t per_model = 16 * CP * OP;
  const int64_t chunks = std::min<int64_t>(s.N, kKernelGradChunks);
  std::vector<float> acc(static_cast<size_t>(s.G * chunks * per_model));
  const WinogradTiles wt{(s.OH + 1) / 2, (s.OW + 1) / 2};
  constexpr int64_t kTilesPerPass = 256;
  auto body = [&](int64_t item) {
    thread_local std::vector<float> v, d;
    const int64_t g = item / chunks, chunk = item - g * chunks;
    float* mine = acc.data() + item * per_model;
    std::memset(mine, 0, per_model * sizeof(float));
    const int64_t begin = chunk * s.N / chunks * wt.Per();
    const int64_t end = (chunk + 1) * s.N / chunks * wt.Per();
    const float* xg = x + g * s.N * s.H * s.W * s.C;
    const float* dyg = dy + g * s.N * s.OH * s.OW * s.O;
    for (int64_t t0 = begin; t0 < end; t0 += kTilesPerPass) {
      const int64_t count = std::min(kTilesPerPass, end - t0);
      v.resize(16 * count * CP);
      d.resize(16 * count * OP);
      WinogradInputs(xg, s, wt, t0, count, count, CP, v.data());
      WinogradGradients(dyg, s, wt, t0, count, count, OP, d.data());
      WinogradGradProducts(v.data(), d.data(), CP, OP, count, mine);
    }
  };
  const int64_t items = s.G * chunks;
  ParallelFor(pool, items, Workers(pool, items), body);
  // One (model, input channel) per item: the chunks' sums in order, then dw = A'^T M A'.
  auto reduce = [&](int64_t item) {
    const int64_t g = item / s.C, c = item - g * s.C;
    const float* first = acc.data() + g * chunks * per_model + c * OP;
    for (int64_t o = 0; o < OP; o += kLanes) {
      Vec m[4][4], t3[3][4];
      for (int e = 0; e < 16; ++e) {
        Vec sum = Load(first + e * CP * OP + o);
        for (int64_t k = 1; k < chunks; ++k) sum += Load(first + k * per_model + e * CP * OP + o);
        m[e / 4][e % 4] = sum;
      }
      for (int j = 0; j < 4; ++j) {  // A'^T M
        t3[0][j] = m[0][j] + m[1][j] + m[2][j];
        t3[1][j] = m[1][j] - m[2][j];
        t3[2][j] = m[1][j] + m[2][j] + m[3][j];
      }
      for (int i = 0; i < 3; ++i) {  // (A'^T M) A'
        const Vec r3[3] = {t3[i][0] + t3[i][1] + t3[i][2], t3[i][1] - t3[i][2],
                           t3[i][1] + t3[i][2] + t3[i][3]};
        for (int j = 0; j < 3; ++j)
          StoreFirst(dw + ((g * 9 + i * 3 + j) * s.C + c) * s.O + o, r3[j], s.O - o);
      }
    }
  };
  ParallelFor(pool, s.G * s.C, Workers(pool, s.G * s.C), reduce);
}

// ----------------------------------------------------------------------------------------

ffi::Error MakeGeometry(Dims xd, int64_t KH, int64_t KW, int64_t C_kernel, int64_t O,
                        int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl,
                        int64_t pr, Geometry& s) {
  if (xd.size() < 4) return ffi::Error::InvalidArgument("input must be (..., N, H, W, C)");
  const size_t r = xd.size();
  s.G = 1;
  for (size_t k = 0; k + 4 < r; ++k) s.G *= xd[k];
  s.N = xd[r - 4]; s.H = xd[r - 3]; s.W = xd[r - 2]; s.C = xd[r - 1];
  s.KH = KH; s.KW = KW; s.O = O; s.SH = sh; s.SW = sw;
  if (C_kernel != s.C) return ffi::Error::InvalidArgument("input and kernel channels differ");
  if (pt < 0 || pb < 0 || pl < 0 || pr < 0)
    return ffi::Error::InvalidArgument("padding must not be negative");
  if (sh < 1 || sw < 1) return ffi::Error::InvalidArgument("strides must be positive");
  s.pad_top = pt; s.pad_left = pl;
  // A row's right padding and the next row's left padding are the same zeros: rows of
  // W + max(pl, pr) pixels (a read past a row's end lands in the next row's left padding).
  s.Hp = s.H + pt + pb; s.Wp = s.W + std::max(pl, pr);
  if (s.Hp < KH || s.W + pl + pr < KW)
    return ffi::Error::InvalidArgument("kernel larger than input");
  if (std::min(pl, pr) > KW - 1)
    return ffi::Error::InvalidArgument("horizontal padding must not exceed kernel width - 1");
  s.OH = (s.Hp - KH) / sh + 1; s.OW = (s.W + pl + pr - KW) / sw + 1;
  return ffi::Error::Success();
}

int64_t Leading(Dims d) {
  int64_t g = 1;
  for (size_t k = 0; k + 4 < d.size(); ++k) g *= d[k];
  return g;
}

ffi::Error ForwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                       ffi::ResultBuffer<ffi::F32> y, int64_t stride_h, int64_t stride_w,
                       int64_t pad_top, int64_t pad_bottom, int64_t pad_left,
                       int64_t pad_right) {
  auto wd = w.dimensions();
  if (wd.size() < 4) return ffi::Error::InvalidArgument("kernel must be (..., KH, KW, C, O)");
  const size_t r = wd.size();
  Geometry s;
  if (auto e = MakeGeometry(x.dimensions(), wd[r - 4], wd[r - 3], wd[r - 2], wd[r - 1],
                            stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right, s);
      e.failure())
    return e;
  if (Leading(wd) != s.G) return ffi::Error::InvalidArgument("input and kernel zoos differ");
  const int64_t OP = RoundUp(s.O, kLanes);
  const int64_t taps = s.KH * s.KW * s.C;
  // Kernels packed with output channels padded to whole vectors.
  std::vector<float> packed(s.G * taps * OP, 0.0f);
  const float* wsrc = w.typed_data();
  for (int64_t g = 0; g < s.G; ++g)
    for (int64_t t = 0; t < taps; ++t)
      std::memcpy(packed.data() + (g * taps + t) * OP, wsrc + (g * taps + t) * s.O,
                  s.O * sizeof(float));
  if (UsesWinograd(s)) {
    WinogradForward(pool, s, packed.data(), OP, x.typed_data(), y->typed_data());
    return ffi::Error::Success();
  }
  // Wide tiles (64+ output channels, 6 positions) on narrow images: positions are the
  // output pixels themselves (each tile reads its 6 pixels through pointers), not the
  // padded grid whose dropped columns would cost 1 in 9 of the work or more.
  s.dense = OP >= 4 * kLanes && kRegisters >= 32 && (s.Wp - s.OW) * 10 > s.Wp;
  std::vector<int64_t> pos;
  Positions(s, 1, pos);
  const float* xsrc = x.typed_data();
  float* ydst = y->typed_data();
  const int64_t group = ImagesPerGroup(s, 256);
  const int64_t groups = (s.N + group - 1) / group;
  auto body = [&](int64_t item) {
    thread_local std::vector<float> buf, sums;
    const int64_t g = item / groups, n0 = (item - g * groups) * group;
    const int64_t images = std::min(group, s.N - n0);
    const int64_t first = g * s.N + n0;
    buf.resize(images * s.Pixels() * s.C);
    for (int64_t b = 0; b < images; ++b)
      PadImage(xsrc + (first + b) * s.H * s.W * s.C, s, s.C, buf.data() + b * s.Pixels() * s.C);
    sums.resize(images * (s.Q() + 32) * OP);
    ForwardImages(buf.data(), packed.data() + g * taps * OP, s, pos.data(), OP, images,
                  sums.data(), ydst + first * s.OH * s.OW * s.O);
  };
  const int64_t items = s.G * groups;
  ParallelFor(pool, items, Workers(pool, items), body);
  return ffi::Error::Success();
}

ffi::Error KernelGradImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                          ffi::Buffer<ffi::F32> dy, ffi::ResultBuffer<ffi::F32> dw,
                          int64_t stride_h, int64_t stride_w, int64_t pad_top,
                          int64_t pad_bottom, int64_t pad_left, int64_t pad_right) {
  auto kd = dw->dimensions();
  auto gd = dy.dimensions();
  if (kd.size() < 4 || gd.size() < 4)
    return ffi::Error::InvalidArgument("kernel gradient must be (..., KH, KW, C, O)");
  const size_t r = kd.size();
  Geometry s;
  if (auto e = MakeGeometry(x.dimensions(), kd[r - 4], kd[r - 3], kd[r - 2], kd[r - 1],
                            stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right, s);
      e.failure())
    return e;
  const size_t rg = gd.size();
  if (Leading(kd) != s.G || Leading(gd) != s.G || gd[rg - 4] != s.N || gd[rg - 3] != s.OH ||
      gd[rg - 2] != s.OW || gd[rg - 1] != s.O)
    return ffi::Error::InvalidArgument("output gradient shape does not match the convolution");
  if (UsesWinograd(s)) {
    WinogradKernelGrad(pool, s, x.typed_data(), dy.typed_data(), dw->typed_data());
    return ffi::Error::Success();
  }
  const int64_t OP = RoundUp(s.O, kLanes);
  const int64_t CP = RoundUp(s.C, kChannelStep);
  const int64_t per_model = s.KH * s.KW * CP * OP;
  // Each model's images in a fixed number of chunks, each summed in its own buffer and the
  // buffers added in a fixed order: the result does not depend on which thread took what.
  const int64_t chunks = std::min<int64_t>(s.N, kKernelGradChunks);
  std::vector<float> acc(static_cast<size_t>(s.G * chunks * per_model));
  // Where the kernel's gradient outgrows the core's cache, every pass over it must serve
  // more positions than one small image has.
  const bool large = per_model * int64_t(sizeof(float)) > 512 * 1024;
  const int64_t group = large ? ImagesPerGroup(s, 512) : 1;
  std::vector<int64_t> pos;
  Positions(s, group, pos);
  const float* xsrc = x.typed_data();
  const float* dysrc = dy.typed_data();
  auto body = [&](int64_t item) {
    thread_local std::vector<float> xbuf, dybuf;
    const int64_t g = item / chunks, chunk = item - g * chunks;
    float* mine = acc.data() + item * per_model;
    std::memset(mine, 0, per_model * sizeof(float));
    const int64_t end = (chunk + 1) * s.N / chunks;
    for (int64_t n0 = chunk * s.N / chunks; n0 < end; n0 += group) {
      const int64_t images = std::min(group, end - n0);
      xbuf.resize(images * s.Pixels() * CP);
      // dy laid out as the output positions (zero at dropped ones), OP channels.
      dybuf.assign(images * s.Q() * OP, 0.0f);
      for (int64_t b = 0; b < images; ++b) {
        const int64_t image = g * s.N + n0 + b;
        PadImage(xsrc + image * s.H * s.W * s.C, s, CP, xbuf.data() + b * s.Pixels() * CP);
        const float* src = dysrc + image * s.OH * s.OW * s.O;
        for (int64_t a = 0; a < s.OH; ++a) {
          float* row = dybuf.data() + (b * s.Q() + a * s.RowPitch()) * OP;
          if (OP == s.O) {
            std::memcpy(row, src + a * s.OW * s.O, s.OW * s.O * sizeof(float));
          } else {
            for (int64_t c = 0; c < s.OW; ++c)
              std::memcpy(row + c * OP, src + (a * s.OW + c) * s.O, s.O * sizeof(float));
          }
        }
      }
      if (group == 1 && s.Flat()) {  // position q reads pixel q
        KernelGradImages<false>(xbuf.data(), dybuf.data(), s, pos.data(), CP, OP, s.Q(), mine);
      } else {
        KernelGradImages<true>(xbuf.data(), dybuf.data(), s, pos.data(), CP, OP,
                               images * s.Q(), mine);
      }
    }
  };
  const int64_t items = s.G * chunks;
  ParallelFor(pool, items, Workers(pool, items), body);
  // dw[g, t, c, :] = the chunks' sums in chunk order, one (model, tap) per item.
  float* out = dw->typed_data();
  const int64_t taps = s.KH * s.KW;
  auto reduce = [&](int64_t item) {
    const int64_t g = item / taps, t = item - g * taps;
    for (int64_t c = 0; c < s.C; ++c) {
      float* dst = out + ((g * taps + t) * s.C + c) * s.O;
      const float* first = acc.data() + g * chunks * per_model + (t * CP + c) * OP;
      std::memcpy(dst, first, s.O * sizeof(float));
      for (int64_t k = 1; k < chunks; ++k) {
        const float* part = first + k * per_model;
        for (int64_t o = 0; o < s.O; ++o) dst[o] += part[o];
      }
    }
  };
  ParallelFor(pool, s.G * taps, Workers(pool, s.G * taps), reduce);
  return ffi::Error::Success();
}

}  // namespace

// Both kernels: two float32 arrays in, one out, the strides and padding as attributes.
auto ConvBinding() {
  return ffi::Ffi::Bind()
      .Ctx<ffi::ThreadPool>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Ret<ffi::Buffer<ffi::F32>>()
      .Attr<int64_t>("stride_h")
      .Attr<int64_t>("stride_w")
      .Attr<int64_t>("pad_top")
      .Attr<int64_t>("pad_bottom")
      .Attr<int64_t>("pad_left")
      .Attr<int64_t>("pad_right");
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(LmcConvForward, ForwardImpl, ConvBinding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(LmcConvKernelGrad, KernelGradImpl, ConvBinding());
