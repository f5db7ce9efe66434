#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif

/// The bounds the sampled magnitude writer scans with, all keys of the
/// tensor's type, `lo <= guess <= hi`: entries in `[lo, hi]` are recorded
/// for the exact resolution, and `guess` (the sample's estimate of the
/// threshold) decides the provisional mask byte `key > guess`, which the
/// resolution then corrects only where the exact threshold disagrees.
/// The scan also counts the recorded keys in ``bucketCount`` (at most 4096,
/// an L1-resident histogram) buckets of `2^shift` keys from `lo`, so the
/// resolution knows which bucket holds the threshold before it reads a record.
struct MagnitudeBracket<Key: FixedWidthInteger & UnsignedInteger> {
    let lo: Key
    let guess: Key
    let hi: Key
    let shift: Int
    let bucketCount: Int

    init(lo: Key, guess: Key, hi: Key) {
        self.lo = lo
        self.guess = guess
        self.hi = hi
        let span = UInt64(truncatingIfNeeded: hi &- lo)
        shift = max(0, (64 - span.leadingZeroBitCount) - 12)
        bucketCount = Int(truncatingIfNeeded: span >> UInt64(shift)) + 1
    }

    /// The histogram bucket of a key in `[lo, hi]`.
    @inline(__always)
    func bucket(_ key: Key) -> Int {
        Int(truncatingIfNeeded: UInt64(truncatingIfNeeded: key &- lo) >> UInt64(shift))
    }
}

/// The hot loop of the one-pass (sampled) magnitude-mask writer, over
/// `count` values: writes `mask[i] = key(v[i]) > bracket.guess`, counts the
/// keys below `bracket.lo`, tracks the largest key (NaN/Inf watch) and
/// records, in increasing order, every entry whose key is inside
/// `[lo, hi]`: its key into `keys` and its mask address into `places` (both
/// with room for `count`), and counts it in its bucket of `histogram`. Returns the largest key, the count below and the
/// number recorded.
///
/// Float32 runs 32 keys per step in AVX2 (compares, a movemask for the rare
/// in-bracket lanes, packs for the mask bytes), so the pass moves at memory
/// speed. With `streamed` its mask bytes go out with non-temporal stores
/// (no read for ownership of a mask the caches could not keep anyway); then
/// `mask` must be 32-byte aligned and the caller fences before the mask is
/// read. Other types (and the tail) run the scalar loop, which gives the
/// same results.
@inline(__always)
func scanMagnitudeBracket<S: MagnitudeOrdered>(
    _ v: UnsafePointer<S>, _ count: Int, _ bracket: MagnitudeBracket<S.MagnitudeKey>,
    mask: UnsafeMutablePointer<Bool>, streamed: Bool,
    keys: UnsafeMutablePointer<UInt64>, places: UnsafeMutablePointer<UnsafeMutablePointer<Bool>>,
    histogram: UnsafeMutablePointer<UInt32>
) -> (worst: S.MagnitudeKey, below: Int, found: Int) {
    var start = 0
    var worst: S.MagnitudeKey = 0
    var below = 0
    var found = 0
    #if arch(x86_64)
    if S.self == Float.self {
        let (vectorWorst, vectorBelow, vectorFound, done) = scanFloatBracket(
            UnsafeRawPointer(v).assumingMemoryBound(to: Float.self), count,
            lo: UInt32(truncatingIfNeeded: bracket.lo), guess: UInt32(truncatingIfNeeded: bracket.guess),
            hi: UInt32(truncatingIfNeeded: bracket.hi), shift: UInt32(truncatingIfNeeded: bracket.shift),
            mask: mask, streamed: streamed, keys: keys, places: places, histogram: histogram)
        worst = S.MagnitudeKey(truncatingIfNeeded: vectorWorst)
        below = vectorBelow
        found = vectorFound
        start = done
    }
    #endif
    let lo = bracket.lo, guess = bracket.guess, hi = bracket.hi
    for i in start ..< count {
        let key = v[i].magnitudeKey
        worst = max(worst, key)
        mask[i] = key > guess
        if key < lo {
            below &+= 1
        } else if key <= hi {
            keys[found] = UInt64(truncatingIfNeeded: key)
            places[found] = mask + i
            histogram[bracket.bucket(key)] &+= 1
            found &+= 1
        }
    }
    return (worst, below, found)
}

#if arch(x86_64)
/// The float32 keys of ``scanMagnitudeBracket`` in steps of 32; returns the
/// largest key, the count below `lo`, the records written (and counted in
/// `histogram`, buckets of `2^shift` keys from `lo`) and how many
/// values it covered (a multiple of 32; the caller finishes the rest).
/// `lo` and `guess` are keys (below 2^31); `hi` may be `UInt32.max`.
@inline(__always)
private func scanFloatBracket(
    _ v: UnsafePointer<Float>, _ count: Int, lo: UInt32, guess: UInt32, hi: UInt32, shift: UInt32,
    mask: UnsafeMutablePointer<Bool>, streamed: Bool,
    keys: UnsafeMutablePointer<UInt64>, places: UnsafeMutablePointer<UnsafeMutablePointer<Bool>>,
    histogram: UnsafeMutablePointer<UInt32>
) -> (UInt32, Int, Int, Int) {
    // Keys have the sign bit clear, so signed 32-bit compares order them; a
    // bound above every key (hi == max) is clamped to the largest key.
    let signMask = _mm256_set1_epi32(0x7FFF_FFFF)
    let loV = _mm256_set1_epi32(Int32(bitPattern: min(lo, 0x7FFF_FFFF)))
    let guessV = _mm256_set1_epi32(Int32(bitPattern: min(guess, 0x7FFF_FFFF)))
    let hiV = _mm256_set1_epi32(Int32(bitPattern: min(hi, 0x7FFF_FFFF)))
    let ones = _mm256_set1_epi8(1)
    // Lane order after the two packs is 0 4 1 5 2 6 3 7 (in 32-bit units): put it back.
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)
    var worstV = _mm256_setzero_si256(), belowV = _mm256_setzero_si256()
    var i = 0, found = 0
    while i &+ 32 <= count {
        let raw = UnsafeRawPointer(v + i)
        let k0 = _mm256_and_si256(raw.loadUnaligned(as: __m256i.self), signMask)
        let k1 = _mm256_and_si256(raw.loadUnaligned(fromByteOffset: 32, as: __m256i.self), signMask)
        let k2 = _mm256_and_si256(raw.loadUnaligned(fromByteOffset: 64, as: __m256i.self), signMask)
        let k3 = _mm256_and_si256(raw.loadUnaligned(fromByteOffset: 96, as: __m256i.self), signMask)
        worstV = _mm256_max_epi32(worstV, _mm256_max_epi32(_mm256_max_epi32(k0, k1), _mm256_max_epi32(k2, k3)))
        let g0 = _mm256_cmpgt_epi32(k0, hiV), g1 = _mm256_cmpgt_epi32(k1, hiV)
        let g2 = _mm256_cmpgt_epi32(k2, hiV), g3 = _mm256_cmpgt_epi32(k3, hiV)
        let l0 = _mm256_cmpgt_epi32(loV, k0), l1 = _mm256_cmpgt_epi32(loV, k1)
        let l2 = _mm256_cmpgt_epi32(loV, k2), l3 = _mm256_cmpgt_epi32(loV, k3)
        belowV = _mm256_sub_epi32(_mm256_sub_epi32(belowV, _mm256_add_epi32(l0, l1)), _mm256_add_epi32(l2, l3))
        let m0 = _mm256_cmpgt_epi32(k0, guessV), m1 = _mm256_cmpgt_epi32(k1, guessV)
        let m2 = _mm256_cmpgt_epi32(k2, guessV), m3 = _mm256_cmpgt_epi32(k3, guessV)
        let packed = _mm256_packs_epi16(_mm256_packs_epi32(m0, m1), _mm256_packs_epi32(m2, m3))
        let bytes = _mm256_and_si256(_mm256_permutevar8x32_epi32(packed, order), ones)
        if streamed {
            _mm256_stream_si256(UnsafeMutableRawPointer(mask + i).assumingMemoryBound(to: __m256i.self), bytes)
        } else {
            UnsafeMutableRawPointer(mask + i).storeBytes(of: bytes, as: __m256i.self)
        }
        @inline(__always) func outside(_ g: __m256i, _ l: __m256i) -> UInt32 {
            UInt32(truncatingIfNeeded: _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_or_si256(g, l))))
        }
        var inside = ~(outside(g0, l0) | outside(g1, l1) << 8 | outside(g2, l2) << 16 | outside(g3, l3) << 24)
        while inside != 0 {
            let at = i &+ inside.trailingZeroBitCount
            let key = v[at].bitPattern & 0x7FFF_FFFF
            keys[found] = UInt64(key)
            places[found] = mask + at
            histogram[Int(truncatingIfNeeded: (key &- lo) &>> shift)] &+= 1
            found &+= 1
            inside &= inside &- 1
        }
        i &+= 32
    }
    // belowV counts per lane (two pairs added before the subtraction: at most 4 per step).
    let belowLanes = unsafeBitCast(belowV, to: SIMD8<Int32>.self)
    var below = 0
    for lane in 0 ..< 8 { below &+= Int(UInt32(bitPattern: belowLanes[lane])) }
    let worst = unsafeBitCast(worstV, to: SIMD8<UInt32>.self).max()
    return (worst, below, found, i)
}
#endif
