/// The keys of three 0-based `ranks` (ascending, each in `0 ..< count`) in
/// the sorted order of `sample[0 ..< count]`: the sampled magnitude writer's
/// bracket and guess. Reorders `sample`.
///
/// The three ranks lie within a few percent of the sample of each other, so
/// a 4096-bucket histogram of the keys (linear between the sample's smallest
/// and largest key) finds the few buckets that hold them; only those buckets'
/// keys are kept (moved to the front, without branches) and selected from.
/// Three quickselects over the whole sample, as before, spent most of their
/// time in mispredicted partition branches (~4% of a 1e7 call's samples
/// under `perf record`); the histogram costs two branch-free passes. The
/// keys found are the same: the order statistics do not depend on the method.
func magnitudeSampleRanks(_ sample: UnsafeMutablePointer<UInt64>, count: Int,
                          ranks: (Int, Int, Int)) -> (UInt64, UInt64, UInt64) {
    precondition(0 <= ranks.0 && ranks.0 <= ranks.1 && ranks.1 <= ranks.2 && ranks.2 < count)
    var smallest = UInt64.max, largest: UInt64 = 0
    for i in 0 ..< count {
        smallest = min(smallest, sample[i])
        largest = max(largest, sample[i])
    }
    // The same bucket rule as the scan's bracket: at most 4096 buckets of 2^shift keys.
    let buckets = MagnitudeBracket<UInt64>(lo: smallest, guess: smallest, hi: largest)
    let shift = UInt64(buckets.shift)
    return withUnsafeTemporaryAllocation(of: Int.self, capacity: buckets.bucketCount) { histogram in
        histogram.initialize(repeating: 0)
        for i in 0 ..< count { histogram[Int(truncatingIfNeeded: (sample[i] &- smallest) >> shift)] &+= 1 }
        // The buckets holding the first and the last rank, and the count before them.
        var before = 0, first = 0
        while before &+ histogram[first] <= ranks.0 { before &+= histogram[first]; first &+= 1 }
        var through = before &+ histogram[first], last = first
        while through <= ranks.2 { last &+= 1; through &+= histogram[last] }
        // Keep the keys of buckets first ... last, in place (kept <= i).
        let low = UInt64(first), span = UInt64(last - first)
        var kept = 0
        for i in 0 ..< count {
            let key = sample[i]
            sample[kept] = key
            kept &+= ((key &- smallest) >> shift) &- low <= span ? 1 : 0
        }
        // sample[0 ..< kept] holds the sorted ranks before ..< before + kept.
        return (quickselect(sample, count: kept, rank: ranks.0 - before),
                quickselect(sample, count: kept, rank: ranks.1 - before),
                quickselect(sample, count: kept, rank: ranks.2 - before))
    }
}
