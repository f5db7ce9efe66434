#if arch(x86_64)
import _Builtin_intrinsics.intel

/// One full block of 16 activation columns quantized with AVX2 intrinsics:
/// the same operations, in the same order, as the portable `SIMD16<Float>`
/// path, ``ActivationQuantization/quantizeBlockPortable(x:depth:first:blockBase:)``
/// (so the same codes, scales and zero points bit for bit), written as two
/// 8-lane halves because Swift lowered `SIMD16` arithmetic to 128-bit halves
/// behind an out-of-line call per depth (7% of a 4096² × 64 product).
///
/// `vminps a, b` returns `a < b ? a : b` and `vmaxps a, b` returns `a > b ? a : b`,
/// which is exactly `replace(with: a, where: a .< b)` / `.>`: the operand order
/// below keeps signed zeros and NaN where the portable path keeps them.
struct ActivationBlockAVX2 {
    /// One half (8 columns) of a block's ranges: the running minimum and maximum
    /// (0 included) and a NaN detector.
    struct Extremes {
        var low = _mm256_setzero_ps(), high = _mm256_setzero_ps(), poison = _mm256_setzero_ps()

        @inline(__always)
        mutating func add(_ v: __m256) {
            low = _mm256_min_ps(v, low)
            high = _mm256_max_ps(v, high)
            poison = _mm256_add_ps(poison, _mm256_mul_ps(v, _mm256_setzero_ps()))  // NaN once any value is NaN or ±Inf
        }
    }

    /// One half's quantizer: `s` (the step) and `z` (the zero point, as a float).
    struct Quantizer {
        let s: __m256, z: __m256
        static let magic = _mm256_set1_ps(12_582_912), mantissa = _mm256_set1_ps(8_388_608)
        static let lowest = _mm256_setzero_ps(), highest = _mm256_set1_ps(127), byte = _mm256_set1_epi32(0xFF)

        /// `clamp(v)` of the portable path: `lowest` where `v < lowest`, `highest` where `v > highest`.
        @inline(__always)
        static func clamp(_ v: __m256) -> __m256 {
            _mm256_min_ps(highest, _mm256_max_ps(lowest, v))
        }

        @inline(__always)
        init(s: __m256, low: __m256) {
            self.s = s
            let negated = _mm256_xor_ps(low, _mm256_set1_ps(-0.0))  // -low: the sign bit flipped
            z = Quantizer.clamp(_mm256_sub_ps(_mm256_add_ps(_mm256_div_ps(negated, s), Quantizer.magic), Quantizer.magic))
        }

        /// The codes (0...127, one per 32-bit lane) of eight activations.
        @inline(__always)
        func codes(_ v: __m256) -> __m256i {
            let rounded = _mm256_sub_ps(_mm256_add_ps(_mm256_div_ps(v, s), Quantizer.magic), Quantizer.magic)
            let q = Quantizer.clamp(_mm256_add_ps(rounded, z))
            return _mm256_and_si256(_mm256_castps_si256(_mm256_add_ps(q, Quantizer.mantissa)), Quantizer.byte)
        }
    }

    /// The ranges of columns `first ..< first + 16` over all `depth` rows of `x` (row stride `batch`).
    @inline(__always)
    static func ranges(x: UnsafePointer<Float>, depth: Int, batch: Int, first: Int) -> (Extremes, Extremes) {
        var left = Extremes(), right = Extremes()
        for k in 0 ..< depth {
            let row = UnsafeRawPointer(x + (k &* batch &+ first))
            left.add(row.loadUnaligned(as: __m256.self))
            right.add((row + 32).loadUnaligned(as: __m256.self))
        }
        return (left, right)
    }

    /// Writes the codes of columns `first ..< first + 16`, depths `0 ..< quads · 4`, as
    /// `quads` 64-byte records at `records` (record `q` holds word `c` = the four codes of
    /// column `c` at depths `4q ..< 4q + 4`, little-endian), and returns the per-column
    /// code sums of those depths as 32-bit lanes (columns 0–7, 8–15). Callers keep
    /// `quads` ≤ ``maximumQuads`` so that no lane can wrap.
    @inline(__always)
    static func pack(
        x: UnsafePointer<Float>, batch: Int, first: Int, quads: Range<Int>, left: Quantizer, right: Quantizer,
        records: UnsafeMutableRawPointer
    ) -> (__m256i, __m256i) {
        var sumLeft = _mm256_setzero_si256(), sumRight = _mm256_setzero_si256()
        for quad in quads {
            let row = UnsafeRawPointer(x + (quad &* 4 &* batch &+ first))
            let stride = batch &* 4
            @inline(__always) func word(_ q: Quantizer, _ offset: Int, _ sum: inout __m256i) -> __m256i {
                let c0 = q.codes((row + offset).loadUnaligned(as: __m256.self))
                let c1 = q.codes((row + (offset &+ stride)).loadUnaligned(as: __m256.self))
                let c2 = q.codes((row + (offset &+ 2 &* stride)).loadUnaligned(as: __m256.self))
                let c3 = q.codes((row + (offset &+ 3 &* stride)).loadUnaligned(as: __m256.self))
                sum = _mm256_add_epi32(sum, _mm256_add_epi32(_mm256_add_epi32(c0, c1), _mm256_add_epi32(c2, c3)))
                return _mm256_or_si256(_mm256_or_si256(c0, _mm256_slli_epi32(c1, 8)),
                                       _mm256_or_si256(_mm256_slli_epi32(c2, 16), _mm256_slli_epi32(c3, 24)))
            }
            let record = records + quad &* 64
            record.storeBytes(of: word(left, 0, &sumLeft), as: __m256i.self)
            (record + 32).storeBytes(of: word(right, 32, &sumRight), as: __m256i.self)
        }
        return (sumLeft, sumRight)
    }

    /// Records per call of ``pack``: 4 · 127 per record and lane stays far below 2^32.
    static let maximumQuads = 1 << 20
}
#endif
