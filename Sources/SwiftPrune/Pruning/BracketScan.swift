import SwiftPruneBracketScan

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
/// in-bracket lanes, packs for the mask bytes) in the C kernel
/// `swiftprune_scan_float_bracket`, so the pass moves near memory speed.
/// With `streamed` its mask bytes go out with non-temporal stores (no read
/// for ownership of a mask the caches could not keep anyway); then
/// `mask` must be 32-byte aligned and the caller fences before the mask is
/// read. Other types (and the tail) run the scalar loop, which gives the
/// same results.
/// How far ahead of the float32 scan its read prefetches run. The scan keeps
/// the core busy (compares, the records' branches), so the hardware
/// prefetcher alone kept too few lines in flight: 2 KiB ahead took 1e7 from
/// ~10.1 to ~9.4 ms CPU at one thread (interleaved A/B, 5 rounds of 25 calls);
/// 1 and 4 KiB measured within noise of it.
let scanPrefetchBytes: Int64 = 2048

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
    if S.self == Float.self {
        // The C kernel (bracket_scan.c): Swift's code generation for these compares doubled the work.
        var bounds = swiftprune_float_bracket(
            magnitude_bits: 0x7FFF_FFFF, lo: UInt32(truncatingIfNeeded: bracket.lo),
            guess: UInt32(truncatingIfNeeded: bracket.guess),
            hi: UInt32(truncatingIfNeeded: min(UInt64(truncatingIfNeeded: bracket.hi), 0x7FFF_FFFF)),
            shift: UInt32(truncatingIfNeeded: bracket.shift), prefetch_bytes: scanPrefetchBytes)
        var totals = swiftprune_bracket_totals()
        let done = swiftprune_scan_float_bracket(
            UnsafeRawPointer(v).assumingMemoryBound(to: Float.self), Int64(count), &bounds, mask, streamed, keys,
            UnsafeMutableRawPointer(places).assumingMemoryBound(to: UnsafeMutablePointer<Bool>?.self), histogram, &totals)
        worst = S.MagnitudeKey(truncatingIfNeeded: totals.worst)
        below = Int(totals.below)
        found = Int(totals.found)
        start = Int(done)
    }
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
