import Synchronization
import SwiftPrunePrefetch

/// The keep-masks of ``writeMagnitudeMasks(_:prune:into:)`` in one pass over
/// the data for large inputs (sample select, after Floyd and Rivest).
///
/// A seeded, stratified random sample of up to 2^18 magnitudes brackets the `k`-th smallest
/// in a narrow key range `[lo, hi]` (±4 standard deviations of the sample
/// rank) and estimates it (`guess`). One pass then writes every mask byte as
/// `key > guess` — final outside the range — with streaming stores, records
/// the entries inside the range (key and mask address, in flat order) and
/// looks for NaN/Inf; the recorded entries are resolved exactly, the lower
/// flat index first among equal keys, by rewriting only the bytes between
/// `guess` and the exact threshold (``resolveBracket(_:histogram:prune:lo:guess:shift:)``).
/// If the bracket missed (odds ~1e-4) or holds too many entries (many equal
/// values), the two-pass writer redoes the work, so the result never depends
/// on the sample.
/// Below `minimumCount` entries (default 2^24) the sample's fixed cost is not
/// repaid and the two-pass writer runs directly.
@_specialize(where S == Float)
@_specialize(where S == Double)
func writeMagnitudeMasksSampled<S: MagnitudeOrdered>(
    _ data: SegmentedBuffer<S>, prune k: Int, into masks: [UnsafeMutableBufferPointer<Bool>],
    minimumCount: Int = 1 << 24
) throws {
    let total = data.count
    guard total >= max(minimumCount, 256), k > 0, k < total,
          masks.count == data.segments.count,
          zip(masks, data.segments).allSatisfy({ $0.count == $1.count }) else {
        try writeMagnitudeMasksTwoPass(data, prune: k, into: masks)
        return
    }
    // Sample and bracket.
    // Stratified: one random position in each of `sampleCount` equal strata, read in
    // increasing order while walking the segments (no search, prefetch-friendly).
    // Fewer samples for smaller inputs: the sample's cost grows with its size and
    // the bracket's (≈ 4 / √samples of the data) shrinks with it; total / 256 balances
    // both from 2^20 to 2^26 entries (benchmarks/cases/peers.py, magnitude rows).
    let sampleCount = min(1 << 18, max(1 << 12, total / 256), total / 16)
    var generator = Xoshiro256StarStar(seed: 0x5EED_5A3F_1E5E_1EC7)
    let sample = try FallibleAllocation.allocate(UInt64.self, count: sampleCount, "the magnitude sample")
    defer { FallibleAllocation.free(sample) }
    // Positions first, then a tight loop of independent loads: many cache misses
    // in flight at once, instead of one per random-number step.
    for s in 0 ..< sampleCount {
        let lower = partitionRange(total, parts: sampleCount, index: s)
        sample[s] = UInt64(lower.lowerBound) + generator.uniform(below: UInt64(lower.count))
    }
    var s = 0
    for (segment, values) in data.segments.enumerated() {
        let end = data.offsets[segment + 1], offset = UInt64(data.offsets[segment])
        guard let base = values.baseAddress else { continue }
        while s < sampleCount && sample[s] < UInt64(end) {
            // A prefetch a few positions ahead: the misses overlap without
            // waiting for the loads in between to retire.
            let ahead = s &+ 32
            if ahead < sampleCount && sample[ahead] < UInt64(end) {
                swiftprune_prefetch_read(base + Int(truncatingIfNeeded: sample[ahead] &- offset))
            }
            sample[s] = UInt64(base[Int(truncatingIfNeeded: sample[s] &- offset)].magnitudeKey)
            s &+= 1
        }
    }
    let center = Double(k) / Double(total) * Double(sampleCount)
    let spread = 2 * Double(sampleCount).squareRoot() + 16  // 4σ of the sample rank (σ <= √n / 2)
    let lowRank = Int((center - spread).rounded(.down)), highRank = Int((center + spread).rounded(.up))
    // The provisional threshold: the sample's own estimate of the k-th smallest, strictly
    // inside the bracket's ranks (spread >= 16 leaves room).
    let upperStart = max(lowRank + 1, 0), upperEnd = min(highRank, sampleCount)
    let guessRank = min(max(Int(center.rounded(.down)), upperStart), upperEnd - 1)
    let (lowKey, guess, highKey) = magnitudeSampleRanks(
        sample, count: sampleCount, ranks: (max(lowRank, 0), guessRank, min(highRank, sampleCount - 1)))
    let lo: UInt64 = lowRank >= 0 ? lowKey : 0, hi: UInt64 = highRank < sampleCount ? highKey : .max
    let bracket = MagnitudeBracket(lo: S.MagnitudeKey(truncatingIfNeeded: lo),
                                   guess: S.MagnitudeKey(truncatingIfNeeded: guess),
                                   hi: hi == .max ? S.MagnitudeKey.max : S.MagnitudeKey(truncatingIfNeeded: hi))

    // One pass: provisional mask bytes (streamed), records inside [lo, hi], NaN/Inf watch.
    let workers = Threading.workerCount(for: total, minimumPerWorker: 1 << 16)
    let expected = Double(highRank - lowRank) / Double(sampleCount) * Double(total) / Double(workers)
    let cap = Int(4 * expected) + (1 << 16)
    let chunk = 8192
    // Masks the caches could keep are written plainly, for their reader and for the
    // resolution's rewrites (the rule of StreamedMaskWrite).
    let streamMasks = total >= StreamedMaskWrite.threshold
    // Each worker records into its own arrays, sized for the expected count
    // up front and grown (fallibly) past it.
    let records = try (0 ..< workers).map { _ in try BracketRecords(capacity: Int(expected * 1.25) + chunk) }
    let histograms = try FallibleAllocation.allocate(UInt32.self, count: workers * bracket.bucketCount, "the magnitude bracket")
    defer { FallibleAllocation.free(histograms) }
    histograms.initialize(repeating: 0, count: workers * bracket.bucketCount)
    var belowCounts = [Int](repeating: 0, count: workers)
    var failed = [Bool](repeating: false, count: workers)
    var worstKeys = [S.MagnitudeKey](repeating: 0, count: workers)
    belowCounts.withUnsafeMutableBufferPointer { belowOut in
        failed.withUnsafeMutableBufferPointer { failedOut in
            worstKeys.withUnsafeMutableBufferPointer { worstOut in
                parallelFor(workers: workers) { worker in
                    let mine = records[worker], histogram = histograms + worker * bracket.bucketCount
                    var below = 0, worst: S.MagnitudeKey = 0, overflow = false
                    // Pieces collected first: the hot loop below mutates locals, not closure captures.
                    var pieces: [(Int, Range<Int>)] = []
                    data.forEachPiece(of: partitionRange(total, parts: workers, index: worker)) {
                        pieces.append(($0, $1))
                    }
                    pieceLoop: for (segment, range) in pieces {
                        let values = data.segments[segment].baseAddress!, mask = masks[segment].baseAddress!
                        var start = range.lowerBound
                        // A short plain head up to the mask's 32-byte boundary; from there
                        // every chunk starts aligned and streams its mask bytes (large masks).
                        let misalignment = Int(bitPattern: mask + start) & 31
                        var head = misalignment == 0 ? 0 : min(range.count, 32 - misalignment)
                        while start < range.upperBound {
                            let count = head > 0 ? head : min(chunk, range.upperBound - start)
                            let streamed = streamMasks && head == 0
                            head = 0
                            // A refused reservation (out of memory) counts as an overflow.
                            guard mine.reserve(count) else { overflow = true; break pieceLoop }
                            let (chunkWorst, chunkBelow, found) = scanMagnitudeBracket(
                                values + start, count, bracket, mask: mask + start, streamed: streamed,
                                keys: mine.keys + mine.count, places: mine.places + mine.count, histogram: histogram)
                            worst = max(worst, chunkWorst)
                            below &+= chunkBelow
                            mine.count += found
                            // A runaway bracket (many equal values) stops early.
                            if mine.count > cap { overflow = true; break pieceLoop }
                            start += count
                        }
                    }
                    // The streamed mask bytes are visible to whoever reads the mask next.
                    atomicMemoryFence(ordering: .sequentiallyConsistent)
                    belowOut[worker] = below
                    failedOut[worker] = overflow
                    worstOut[worker] = worst
                }
            }
        }
    }
    // An overflow or a missed bracket: the two-pass writer below needs less
    // memory, and throws if even that is refused.
    let below = belowCounts.reduce(0, +)
    let candidates = records.reduce(0) { $0 + $1.count }
    guard !failed.contains(true), below <= k, k <= below + candidates else {
        try writeMagnitudeMasksTwoPass(data, prune: k, into: masks)
        return
    }
    guard worstKeys.allSatisfy({ $0 < S.infinityKey }) else {
        // The exact count comes from the validating writer.
        try writeMagnitudeMasksTwoPass(data, prune: k, into: masks)
        return
    }
    var histogram = [Int](repeating: 0, count: bracket.bucketCount)
    for worker in 0 ..< workers {
        for b in 0 ..< bracket.bucketCount { histogram[b] &+= Int(histograms[worker * bracket.bucketCount + b]) }
    }
    try resolveBracket(records, histogram: histogram, prune: k - below, lo: UInt64(truncatingIfNeeded: bracket.lo),
                       guess: UInt64(truncatingIfNeeded: bracket.guess), shift: bracket.shift)
}
