/// The keep-masks of ``writeMagnitudeMasks(_:prune:into:)`` in one pass over
/// the data for large inputs (sample select, after Floyd and Rivest).
///
/// A seeded, stratified random sample of up to 2^18 magnitudes brackets the `k`-th smallest
/// in a narrow key range `[lo, hi]` (±4 standard deviations of the sample
/// rank). One pass then writes every mask entry outside the range (`< lo`
/// pruned, `> hi` kept), records the entries inside it (key and mask address,
/// in flat order) and looks for NaN/Inf; the recorded entries are resolved
/// exactly, the lower flat index first among equal keys. If the bracket
/// missed (odds ~1e-4) or holds too many entries (many equal values), the
/// two-pass writer redoes the work, so the result never depends on the sample.
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
            sample[s] = UInt64(base[Int(truncatingIfNeeded: sample[s] &- offset)].magnitudeKey)
            s &+= 1
        }
    }
    let center = Double(k) / Double(total) * Double(sampleCount)
    let spread = 2 * Double(sampleCount).squareRoot() + 16  // 4σ of the sample rank (σ <= √n / 2)
    let lowRank = Int((center - spread).rounded(.down)), highRank = Int((center + spread).rounded(.up))
    let lo: UInt64 = lowRank < 0 ? 0 : quickselect(sample, count: sampleCount, rank: lowRank)
    let hi: UInt64 = highRank >= sampleCount ? .max : quickselect(sample, count: sampleCount, rank: highRank)
    let loKey = S.MagnitudeKey(truncatingIfNeeded: lo)
    let hiKey = hi == .max ? S.MagnitudeKey.max : S.MagnitudeKey(truncatingIfNeeded: hi)

    // One pass: direct writes outside [lo, hi], records inside, NaN/Inf watch.
    let workers = Threading.workerCount(for: total, minimumPerWorker: 1 << 16)
    let expected = Double(highRank - lowRank) / Double(sampleCount) * Double(total) / Double(workers)
    let cap = Int(4 * expected) + (1 << 16)
    // Each worker records into its own arrays, sized for the expected count
    // up front and grown (fallibly) past it.
    let recordKeys = try (0 ..< workers).map { _ in
        try ScratchArray<UInt64>(capacity: Int(expected * 1.25) + 64, "the magnitude bracket") }
    let recordPlaces = try (0 ..< workers).map { _ in
        try ScratchArray<UnsafeMutablePointer<Bool>>(capacity: Int(expected * 1.25) + 64, "the magnitude bracket") }
    var belowCounts = [Int](repeating: 0, count: workers)
    var failed = [Bool](repeating: false, count: workers)
    var worstKeys = [S.MagnitudeKey](repeating: 0, count: workers)
            belowCounts.withUnsafeMutableBufferPointer { belowOut in
                failed.withUnsafeMutableBufferPointer { failedOut in
                    worstKeys.withUnsafeMutableBufferPointer { worstOut in
                        parallelFor(workers: workers) { worker in
                            let keys = recordKeys[worker], places = recordPlaces[worker]
                            var below = 0, worst: S.MagnitudeKey = 0, overflow = false
                            // Pieces collected first: the hot loop below mutates locals, not closure captures.
                            var pieces: [(Int, Range<Int>)] = []
                            data.forEachPiece(of: partitionRange(total, parts: workers, index: worker)) {
                                pieces.append(($0, $1))
                            }
                            // Hits of one chunk: offsets, then keys and mask addresses, appended in bulk.
                            let chunk = 8192
                            let hits = UnsafeMutablePointer<UInt32>.allocate(capacity: chunk)
                            let hitKeys = UnsafeMutablePointer<UInt64>.allocate(capacity: chunk)
                            let hitPlaces = UnsafeMutablePointer<UnsafeMutablePointer<Bool>>.allocate(capacity: chunk)
                            defer { hits.deallocate(); hitKeys.deallocate(); hitPlaces.deallocate() }
                            pieceLoop: for (segment, range) in pieces {
                                let values = data.segments[segment].baseAddress!, mask = masks[segment].baseAddress!
                                var start = range.lowerBound
                                while start < range.upperBound {
                                    let count = min(chunk, range.upperBound - start)
                                    let v = values + start, m = mask + start
                                    let (chunkWorst, chunkBelow, found) = scanMagnitudeBracket(
                                        v, count, lo: loKey, hi: hiKey, mask: m, hits: hits)
                                    worst = max(worst, chunkWorst)
                                    below &+= chunkBelow
                                    if found > 0 {
                                        for h in 0 ..< found {
                                            let i = Int(hits[h])
                                            hitKeys[h] = UInt64(v[i].magnitudeKey)
                                            hitPlaces[h] = m + i
                                        }
                                        keys.append(contentsOf: UnsafeBufferPointer(start: hitKeys, count: found))
                                        places.append(contentsOf: UnsafeBufferPointer(start: hitPlaces, count: found))
                                        // A runaway bracket (many equal values) stops early.
                                        if keys.count > cap || keys.failed || places.failed { overflow = true; break pieceLoop }
                                    }
                                    start += count
                                }
                            }
                            belowOut[worker] = below
                            failedOut[worker] = overflow
                            worstOut[worker] = worst
                        }
                    }
                }
            }
    // A refused append (out of memory) counts as an overflow: the two-pass
    // writer below needs less memory, and throws if even that is refused.
    let below = belowCounts.reduce(0, +)
    let candidates = recordKeys.reduce(0) { $0 + $1.count }
    guard !failed.contains(true), below <= k, k <= below + candidates else {
        try writeMagnitudeMasksTwoPass(data, prune: k, into: masks)
        return
    }
    guard worstKeys.allSatisfy({ $0 < S.infinityKey }) else {
        // The exact count comes from the validating writer.
        try writeMagnitudeMasksTwoPass(data, prune: k, into: masks)
        return
    }

    // Resolve the bracket: prune its `need` smallest, lower flat index first among ties.
    let need = k - below
    guard need > 0 else {
        for places in recordPlaces { for place in places.buffer { place.pointee = true } }
        return
    }
    let (threshold, countBelow) = try bracketSelect(recordKeys.map { UnsafeBufferPointer($0.buffer) }, rank: need - 1,
                                                    lo: lo, hi: hi == .max ? UInt64(S.MagnitudeKey.max) : hi)
    var ties = need - countBelow
    for (keys, places) in zip(recordKeys, recordPlaces) {
        for (key, place) in zip(keys.buffer, places.buffer) {
            if key < threshold {
                place.pointee = false
            } else if key == threshold && ties > 0 {
                place.pointee = false
                ties -= 1
            } else {
                place.pointee = true
            }
        }
    }
}
