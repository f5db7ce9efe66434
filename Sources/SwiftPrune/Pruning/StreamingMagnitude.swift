/// The two building blocks of exact global magnitude pruning over data that
/// is never in memory at once (a sharded checkpoint, a cluster of workers).
///
/// A coordinator asks every tensor for ``magnitudeHistogram(_:low:shift:bins:into:)``
/// counts, merges them (adds them up) and walks the merged histogram to the
/// bin holding the `k`-th smallest magnitude; one more, finer histogram
/// restricted to that bin pins the exact threshold key (float32 keys have 31
/// bits: 16 + 15). Every tensor's mask then follows from the threshold alone
/// and the number of equal magnitudes it must prune
/// (``writeMagnitudeThresholdMask(_:threshold:prunedTies:into:)``): the same
/// masks, bit for bit, as ``globalMagnitudeMasks(_:sparsity:into:)`` over
/// the concatenation.

/// Counts the magnitude keys (`|x|`'s IEEE bit pattern without the sign,
/// 31 bits) of `w` that fall in `low ..< low + bins << shift`, bin
/// `(key - low) >> shift` each; `counts` (`bins` entries) is overwritten.
///
/// - Returns: `lowBits`, the bitwise OR of `key & (1 << shift - 1)` over the
///   counted keys (zero means every non-empty bin holds a single key value,
///   so the histogram is exact), and `nonFinite`, the number of NaN or Inf
///   values in all of `w` (counted whatever the range).
/// - Throws: ``SwiftPruneError`` for a shift outside 0...31, `bins` < 1 or a
///   range that leaves the 31-bit key space, or `counts` of the wrong size.
public func magnitudeHistogram(
    _ w: UnsafeBufferPointer<Float>, low: UInt32, shift: Int, bins: Int,
    into counts: UnsafeMutableBufferPointer<Int64>
) throws -> (lowBits: UInt32, nonFinite: Int) {
    guard (0 ... 31).contains(shift) else { throw SwiftPruneError.value("shift must be in 0...31, got \(shift)") }
    guard bins >= 1 && bins <= 1 << 24 else { throw SwiftPruneError.value("bins must be in 1...2^24, got \(bins)") }
    guard counts.count == bins else {
        throw SwiftPruneError.value("counts has \(counts.count) entries, expected bins = \(bins)")
    }
    let span = UInt64(bins) << UInt64(shift)
    guard UInt64(low) + span <= 1 << 31 else {
        throw SwiftPruneError.value("the range low = \(low) + bins << shift leaves the 31-bit magnitude keys")
    }
    for b in 0 ..< bins { counts[b] = 0 }
    let total = w.count
    guard total > 0 else { return (0, 0) }
    // Per-worker UInt32 counts: keep each worker below 2^32 elements.
    let workers = max(Threading.workerCount(for: total, minimumPerWorker: 1 << 16), (total >> 32) + 1)
    var histograms = try [UInt32](fallibleRepeating: 0, count: workers * bins, "the magnitude histograms")
    var orBits = [UInt32](repeating: 0, count: workers)
    var bad = [Int](repeating: 0, count: workers)
    let lowBitMask = UInt32(truncatingIfNeeded: (UInt64(1) << UInt64(shift)) - 1)
    let width = UInt32(truncatingIfNeeded: span - 1)  // keys with key - low <= width are in range
    histograms.withUnsafeMutableBufferPointer { all in
        orBits.withUnsafeMutableBufferPointer { ors in
            bad.withUnsafeMutableBufferPointer { nonFinite in
                let base = all.baseAddress!, values = w.baseAddress!
                parallelFor(workers: workers) { worker in
                    let histogram = base + worker * bins
                    var seen: UInt32 = 0, infinite = 0
                    for i in partitionRange(total, parts: workers, index: worker) {
                        let key = values[i].magnitudeKey
                        if key >= Float.infinityKey { infinite &+= 1 }
                        let offset = key &- low  // wraps to a huge value below `low`
                        if offset <= width {
                            histogram[Int(truncatingIfNeeded: offset >> UInt32(shift))] &+= 1
                            seen |= offset & lowBitMask
                        }
                    }
                    ors[worker] = seen
                    nonFinite[worker] = infinite
                }
            }
        }
    }
    for worker in 0 ..< workers {
        let offset = worker * bins
        for b in 0 ..< bins { counts[b] &+= Int64(histograms[offset + b]) }
    }
    return (orBits.reduce(0, |), bad.reduce(0, +))
}

/// Writes the keep-mask of one tensor of a globally pruned set, given the
/// global threshold: `mask[i]` is true for `|w[i]|` above the magnitude whose
/// key is `threshold`, false below it, and among the entries of exactly that
/// magnitude the first `prunedTies` (C order) are false, the rest true.
/// - Throws: ``SwiftPruneError`` for NaN/Inf in `w` (the mask is then
///   unspecified), a negative `prunedTies`, or a mask of the wrong size.
public func writeMagnitudeThresholdMask(
    _ w: UnsafeBufferPointer<Float>, threshold: UInt32, prunedTies: Int,
    into mask: UnsafeMutableBufferPointer<Bool>
) throws {
    guard mask.count == w.count else {
        throw SwiftPruneError.value("mask has \(mask.count) entries, weights \(w.count)")
    }
    guard prunedTies >= 0 else { throw SwiftPruneError.value("prunedTies must be >= 0, got \(prunedTies)") }
    let total = w.count
    guard total > 0 else { return }
    let workers = Threading.workerCount(for: total, minimumPerWorker: 1 << 16)
    var equal = [Int](repeating: 0, count: workers)
    var bad = [Int](repeating: 0, count: workers)
    equal.withUnsafeMutableBufferPointer { equalCounts in
        bad.withUnsafeMutableBufferPointer { nonFinite in
            let values = w.baseAddress!, out = mask.baseAddress!
            parallelFor(workers: workers) { worker in
                var ties = 0, infinite = 0
                for i in partitionRange(total, parts: workers, index: worker) {
                    let key = values[i].magnitudeKey
                    out[i] = key >= threshold
                    if key == threshold { ties &+= 1 }
                    if key >= Float.infinityKey { infinite &+= 1 }
                }
                equalCounts[worker] = ties
                nonFinite[worker] = infinite
            }
        }
    }
    let nonFinite = bad.reduce(0, +)
    guard nonFinite == 0 else { throw SwiftPruneError.value("weights contain \(nonFinite) NaN or Inf value(s)") }
    guard prunedTies > 0 else { return }
    // Each worker prunes its share of the ties, in order: the lower flat index first.
    var quota = [Int](repeating: 0, count: workers)
    var remaining = prunedTies
    for worker in 0 ..< workers {
        quota[worker] = min(remaining, equal[worker])
        remaining -= quota[worker]
    }
    quota.withUnsafeBufferPointer { quotas in
        let values = w.baseAddress!, out = mask.baseAddress!
        parallelFor(workers: workers) { worker in
            var left = quotas[worker]
            guard left > 0 else { return }
            for i in partitionRange(total, parts: workers, index: worker) where values[i].magnitudeKey == threshold {
                out[i] = false
                left -= 1
                if left == 0 { break }
            }
        }
    }
}
