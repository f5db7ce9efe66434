/// The keep-masks of ``writeMagnitudeMasks(_:prune:into:)`` in two passes
/// over the data instead of three — the difference that matters for global
/// pruning of a whole model, which is memory-bound.
///
/// Pass 1 builds per-worker histograms of the top 16 key bits (and finds
/// NaN/Inf); it fixes the bucket `b` holding the `k`-th smallest magnitude.
/// Pass 2 writes every mask entry outside `b` directly (`bucket > b` kept)
/// and records the entries of `b` — key and mask address — in flat order.
/// The few recorded entries are then resolved exactly: the `need`
/// smallest are pruned, the lower flat index first among equal keys.
/// Falls back to the three-pass writer when bucket `b` is so large (many
/// equal values) that recording it would cost more than a pass.
@_specialize(where S == Float)
@_specialize(where S == Double)
func writeMagnitudeMasksTwoPass<S: MagnitudeOrdered>(
    _ data: SegmentedBuffer<S>, prune k: Int, into masks: [UnsafeMutableBufferPointer<Bool>]
) throws {
    try checkMaskSegments(masks, data)
    let total = data.count
    guard k >= 0 && k <= total else {
        throw SwiftPruneError.value("k = \(k) is out of range for \(total) elements")
    }
    let shift = S.magnitudeKeyBits - MagnitudeSelection.digitBits
    let buckets = 1 << MagnitudeSelection.digitBits
    let (workers, histograms, merged) = try MagnitudeSelection.topDigitHistograms(data)
    if k == 0 || k == total {
        for mask in masks where mask.count > 0 { mask.initialize(repeating: k == 0) }
        return
    }
    var below = 0, bucket = 0
    while below + merged[bucket] < k { below += merged[bucket]; bucket += 1 }
    let candidates = merged[bucket]
    guard candidates <= max(1 << 20, total / 16) else {
        try writeMagnitudeMasks(data, prune: k, into: masks)
        return
    }

    // Pass 2: direct writes outside the bucket, records inside it (flat order per worker).
    var starts = [Int](repeating: 0, count: workers + 1)
    for worker in 0 ..< workers { starts[worker + 1] = starts[worker] + Int(histograms[worker * buckets + bucket]) }
    let chosen = S.MagnitudeKey(truncatingIfNeeded: bucket)
    let keys = try FallibleAllocation.allocate(UInt64.self, count: candidates, "the magnitude bucket")
    defer { FallibleAllocation.free(keys) }
    let places = try FallibleAllocation.allocate(UnsafeMutablePointer<Bool>.self, count: candidates, "the magnitude bucket")
    defer { FallibleAllocation.free(places) }
    parallelFor(workers: workers) { worker in
        var write = starts[worker]
        data.forEachPiece(of: partitionRange(total, parts: workers, index: worker)) { segment, range in
            let values = data.segments[segment].baseAddress!, mask = masks[segment].baseAddress!
            for i in range {
                let key = values[i].magnitudeKey
                let digit = key >> shift
                mask[i] = digit > chosen
                if digit == chosen {
                    keys[write] = UInt64(key)
                    places[write] = mask + i
                    write &+= 1
                }
            }
        }
    }

    // Resolve the bucket: prune its `need` smallest keys, lower flat index first among ties.
    let need = k - below
    let scratch = try FallibleAllocation.allocate(UInt64.self, count: candidates, "the magnitude bucket")
    defer { FallibleAllocation.free(scratch) }
    scratch.update(from: keys, count: candidates)
    let threshold = quickselect(scratch, count: candidates, rank: need - 1)
    var countBelow = 0
    for c in 0 ..< candidates where keys[c] < threshold { countBelow += 1 }
    var ties = need - countBelow
    for c in 0 ..< candidates {
        let key = keys[c]
        if key < threshold {
            places[c].pointee = false
        } else if key == threshold && ties > 0 {
            places[c].pointee = false
            ties -= 1
        } else {
            places[c].pointee = true
        }
    }
}
