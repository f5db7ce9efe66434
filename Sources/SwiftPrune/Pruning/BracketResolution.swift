import SwiftPruneBracketScan
import SwiftPrunePrefetch

/// Corrects the provisional mask bytes (`key > guess`) of the recorded
/// bracket entries: the `need` smallest recorded keys are pruned, the lower
/// flat index first among equal keys, the rest kept. `histogram` counts the
/// records in buckets of `2^shift` keys from `lo` (the scan's), so one pass
/// over the records settles every entry outside the bucket holding the
/// threshold and gathers that bucket's few entries, which quickselect then
/// settles exactly.
///
/// Decisions and writes are two loops. Only the bytes decided otherwise than
/// by `guess` change — the entries between `guess` and the threshold, about a
/// tenth of the bracket — and they sit in mask lines the streaming stores
/// sent to memory, so each write misses. The decision loop lists them
/// (branch-free); ``toggleMaskBytes(_:count:)`` then writes them with
/// prefetches far enough ahead in that list to keep many misses in flight
/// (a prefetch a fixed number of *records* ahead, as before, had only a few).
func resolveBracket(_ records: [BracketRecords], histogram: [Int], prune need: Int, lo: UInt64, guess: UInt64,
                    shift: Int) throws {
    // The flips are listed in place, at the front of each worker's `places`
    // (a flip is written at or before the record it came from): no extra
    // memory, which a caller's later allocations would otherwise inherit.
    guard need > 0 else {
        // Nothing in the bracket is pruned: every provisional `false` flips.
        for mine in records {
            var flips = 0
            for c in 0 ..< mine.count {
                mine.places[flips] = mine.places[c]
                flips &+= mine.keys[c] <= guess ? 1 : 0
            }
            toggleMaskBytes(mine.places, count: flips)
        }
        return
    }
    var below = 0, chosen = 0
    while below &+ histogram[chosen] < need { below &+= histogram[chosen]; chosen &+= 1 }
    let size = histogram[chosen]
    let bucketKeys = try FallibleAllocation.allocate(UInt64.self, count: 2 * size, "the magnitude bracket")
    defer { FallibleAllocation.free(bucketKeys) }
    let bucketPlaces = try FallibleAllocation.allocate(UnsafeMutablePointer<Bool>.self, count: size, "the magnitude bracket")
    defer { FallibleAllocation.free(bucketPlaces) }
    // Outside the chosen bucket the decision is the bucket's side of it.
    var gathered: Int64 = 0
    var flipCounts: [Int] = []
    for mine in records {
        // The decision loop in C (bracket_flips.c): Swift's kept its flip count on the stack
        // (perf annotate); its gain was not measured apart from round 10's other changes.
        let flips = swiftprune_list_bracket_flips(
            mine.keys, UnsafeMutableRawPointer(mine.places).assumingMemoryBound(to: UnsafeMutablePointer<Bool>?.self),
            Int64(mine.count), lo, UInt32(shift), UInt64(chosen), guess, bucketKeys,
            UnsafeMutableRawPointer(bucketPlaces).assumingMemoryBound(to: UnsafeMutablePointer<Bool>?.self), &gathered)
        flipCounts.append(Int(flips))
    }
    // The chosen bucket, in flat order: the threshold by quickselect on a copy,
    // then the first `need - countBelow` entries equal to it pruned.
    let scratch = bucketKeys + size
    scratch.update(from: bucketKeys, count: size)
    let threshold = quickselect(scratch, count: size, rank: need - 1 - below)
    var countBelow = below
    for j in 0 ..< size where bucketKeys[j] < threshold { countBelow &+= 1 }
    var prunedTies = need - countBelow
    var bucketFlips = 0
    for j in 0 ..< size {
        let key = bucketKeys[j]
        let keep: Bool
        if key == threshold {
            keep = prunedTies <= 0
            prunedTies -= 1
        } else {
            keep = key > threshold
        }
        if keep != (key > guess) {
            bucketPlaces[bucketFlips] = bucketPlaces[j]
            bucketFlips &+= 1
        }
    }
    for (mine, flips) in zip(records, flipCounts) { toggleMaskBytes(mine.places, count: flips) }
    toggleMaskBytes(bucketPlaces, count: bucketFlips)
}

/// Inverts the `count` mask bytes at `places` (each listed once), with write
/// prefetches a fixed distance ahead in the list: the bytes are scattered
/// over lines that are in memory, not in cache.
func toggleMaskBytes(_ places: UnsafeMutablePointer<UnsafeMutablePointer<Bool>>, count: Int) {
    let distance = 32  // 64 measured the same
    var j = 0
    while j < count {
        if j &+ distance < count { swiftprune_prefetch_write(places[j &+ distance]) }
        places[j].pointee = !places[j].pointee
        j &+= 1
    }
}
