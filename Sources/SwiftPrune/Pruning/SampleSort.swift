/// Sorts the `count` keys at `keys` (each below `2^keyBits`) in place: an
/// LSD radix sort, 11 bits a pass (three passes for float32 magnitude keys,
/// six for float64), the passes' histograms counted in one read.
///
/// The sampled magnitude writer takes three ranks of its sample (the
/// bracket's bounds and the threshold estimate); three quickselects cost
/// about twice the sort's handful of predictable, vectorizable passes, whose
/// scatters stay in L2 for the sample sizes it draws (up to 2^18 keys).
/// - Throws: `.outOfMemory` if the scratch copy cannot be allocated.
func radixSortKeys(_ keys: UnsafeMutablePointer<UInt64>, count: Int, keyBits: Int) throws {
    guard count > 1 else { return }
    let digitBits = 11, buckets = 1 << digitBits
    let passes = max(1, (min(keyBits, 64) + digitBits - 1) / digitBits)
    let scratch = try FallibleAllocation.allocate(UInt64.self, count: count, "the magnitude sample")
    defer { FallibleAllocation.free(scratch) }
    let counts = try FallibleAllocation.allocate(Int.self, count: passes * buckets, "the magnitude sample")
    defer { FallibleAllocation.free(counts) }
    counts.initialize(repeating: 0, count: passes * buckets)
    let digitMask = UInt64(buckets - 1)
    for i in 0 ..< count {
        let key = keys[i]
        for pass in 0 ..< passes {
            counts[pass * buckets + Int(truncatingIfNeeded: (key >> UInt64(pass * digitBits)) & digitMask)] &+= 1
        }
    }
    var source = keys, target = scratch
    for pass in 0 ..< passes {
        let histogram = counts + pass * buckets
        // Counts to starting offsets; a pass whose digits are all equal moves nothing.
        var offset = 0, skip = false
        for b in 0 ..< buckets {
            let n = histogram[b]
            if n == count { skip = true; break }
            histogram[b] = offset
            offset &+= n
        }
        if skip { continue }
        let shift = UInt64(pass * digitBits)
        for i in 0 ..< count {
            let key = source[i]
            let b = Int(truncatingIfNeeded: (key >> shift) & digitMask)
            target[histogram[b]] = key
            histogram[b] &+= 1
        }
        swap(&source, &target)
    }
    if source != keys { keys.update(from: source, count: count) }
}
