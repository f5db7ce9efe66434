/// Where the `k`-th smallest magnitude lies: exactly `countBelow` elements
/// have a smaller magnitude and `countEqual` have exactly `key`'s magnitude,
/// with `countBelow < k <= countBelow + countEqual`.
public struct MagnitudeThreshold<Key: FixedWidthInteger & UnsignedInteger>: Equatable {
    public let key: Key
    public let countBelow: Int
    public let countEqual: Int
}

/// Exact selection of the `k`-th smallest `|x|` in O(n) with no sort.
///
/// Pass 1 builds per-worker histograms of the top 16 key bits and finds the
/// bucket holding rank `k`; pass 2 gathers that bucket's keys; the remaining
/// bits are resolved on the (small) gathered keys. NaN and Inf are detected
/// from the histogram at no extra cost.
public enum MagnitudeSelection {
    static let digitBits = 16
    static let minimumPerWorker = 1 << 16

    /// Selects the `k`-th smallest magnitude (1-based) over all of `data`.
    /// `k == 0` only validates the data and returns `nil`.
    /// - Throws: ``SwiftPruneError`` if `data` holds NaN or Inf, or `k` is out of range.
    @_specialize(where S == Float)
    @_specialize(where S == Double)
    public static func select<S: MagnitudeOrdered>(
        _ data: SegmentedBuffer<S>, k: Int
    ) throws -> MagnitudeThreshold<S.MagnitudeKey>? {
        let total = data.count
        guard k >= 0 && k <= total else {
            throw SwiftPruneError.value("k = \(k) is out of range for \(total) elements")
        }
        let shift = S.magnitudeKeyBits - digitBits
        let (workers, histograms, merged) = try topDigitHistograms(data)
        let buckets = 1 << digitBits
        guard k > 0 else { return nil }

        var below = 0
        var bucket = 0
        while below + merged[bucket] < k { below += merged[bucket]; bucket += 1 }

        // Gather the chosen bucket's keys, each worker into its own slot.
        var starts = [Int](repeating: 0, count: workers + 1)
        for worker in 0 ..< workers {
            starts[worker + 1] = starts[worker] + Int(histograms[worker * buckets + bucket])
        }
        let chosen = S.MagnitudeKey(truncatingIfNeeded: bucket)
        // Probed first: the bucket can hold most of the data (many equal values).
        try FallibleAllocation.probe(S.MagnitudeKey.self, count: starts[workers], "the magnitude bucket")
        var candidates = [S.MagnitudeKey](unsafeUninitializedCapacity: starts[workers]) { out, initialized in
            let outBase = out.baseAddress!
            parallelFor(workers: workers) { worker in
                var write = outBase + starts[worker]
                data.forEachPiece(of: partitionRange(total, parts: workers, index: worker)) { segment, range in
                    write += S.gatherKeys(data.segments[segment], range, shift: shift, digit: chosen, into: write)
                }
            }
            initialized = starts[workers]
        }
        return refine(&candidates, lowBits: shift, rank: k - below, below: below)
    }

    /// Pass 1 of ``select(_:k:)`` and of the two-pass mask writer: per-worker
    /// histograms of the top ``digitBits`` bits of every magnitude key
    /// (`workers × 2^digitBits` counters; UInt32, so every worker gets fewer
    /// than 2³² elements) and their sums per bucket.
    /// - Throws: ``SwiftPruneError`` if `data` holds NaN or Inf.
    @_specialize(where S == Float)
    @_specialize(where S == Double)
    static func topDigitHistograms<S: MagnitudeOrdered>(
        _ data: SegmentedBuffer<S>
    ) throws -> (workers: Int, perWorker: ScratchArray<UInt32>, merged: [Int]) {
        let total = data.count
        let shift = S.magnitudeKeyBits - digitBits
        let workers = max(Threading.workerCount(for: total, minimumPerWorker: minimumPerWorker),
                          (total >> 32) + 1)
        let buckets = 1 << digitBits
        let histograms = try ScratchArray<UInt32>(repeating: 0, count: workers * buckets, "magnitude histograms")
        do {
            let base = histograms.base
            parallelFor(workers: workers) { worker in
                let histogram = base + worker * buckets
                data.forEachPiece(of: partitionRange(total, parts: workers, index: worker)) { segment, range in
                    let values = data.segments[segment].baseAddress!
                    for i in range {
                        histogram[Int(truncatingIfNeeded: values[i].magnitudeKey >> shift)] &+= 1
                    }
                }
            }
        }
        var merged = [Int](repeating: 0, count: buckets)
        for worker in 0 ..< workers {
            for b in 0 ..< buckets { merged[b] &+= Int(histograms[worker * buckets + b]) }
        }
        // Every key at or above +inf's top digit is Inf or NaN (inf's low bits are zero).
        let firstBadBucket = Int(truncatingIfNeeded: S.infinityKey >> shift)
        var nonFinite = 0
        for b in firstBadBucket ..< buckets { nonFinite += merged[b] }
        guard nonFinite == 0 else {
            throw SwiftPruneError.value("weights contain \(nonFinite) NaN or Inf value(s)")
        }
        return (workers, histograms, merged)
    }

    /// Resolves the remaining `lowBits` of the `rank`-th smallest of `keys`.
    static func refine<Key: FixedWidthInteger & UnsignedInteger>(
        _ keys: inout [Key], lowBits: Int, rank: Int, below: Int
    ) -> MagnitudeThreshold<Key> {
        var remaining = lowBits, rank = rank, below = below
        while remaining > 0 {
            let bits = min(digitBits, remaining)
            remaining -= bits
            let mask = (1 << bits) - 1
            var histogram = [Int](repeating: 0, count: 1 << bits)
            for key in keys { histogram[Int(truncatingIfNeeded: key >> remaining) & mask] += 1 }
            var digit = 0
            while histogram[digit] < rank { rank -= histogram[digit]; below += histogram[digit]; digit += 1 }
            let shift = remaining
            keys.removeAll { Int(truncatingIfNeeded: $0 >> shift) & mask != digit }
        }
        return MagnitudeThreshold(key: keys[0], countBelow: below, countEqual: keys.count)
    }
}
