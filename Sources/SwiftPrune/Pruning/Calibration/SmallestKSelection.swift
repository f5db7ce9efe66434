/// Writes into `keep` the mask that prunes (`false`) the `k` smallest of the
/// `count` non-negative Double `scores`, the lower index first among equal
/// scores. `scratch` must hold `count` UInt64s. Expected O(count)
/// (quickselect on the bit patterns, which order like the values).
@inline(__always)
func pruneSmallestK(
    _ scores: UnsafePointer<Double>, count: Int, k: Int,
    scratch: UnsafeMutablePointer<UInt64>, keep: UnsafeMutablePointer<Bool>
) {
    if k <= 0 { keep.update(repeating: true, count: count); return }
    if k >= count { keep.update(repeating: false, count: count); return }
    for i in 0 ..< count { scratch[i] = scores[i].bitPattern }
    let threshold = quickselect(scratch, count: count, rank: k - 1)
    var below = 0
    for i in 0 ..< count where scores[i].bitPattern < threshold { below += 1 }
    var ties = k - below
    for i in 0 ..< count {
        let key = scores[i].bitPattern
        if key < threshold {
            keep[i] = false
        } else if key == threshold && ties > 0 {
            keep[i] = false
            ties -= 1
        } else {
            keep[i] = true
        }
    }
}

/// The element of 0-based `rank` in sorted order; reorders `a`.
func quickselect(_ a: UnsafeMutablePointer<UInt64>, count: Int, rank: Int) -> UInt64 {
    var lo = 0, hi = count - 1
    while lo < hi {
        // Median of three as pivot, then a three-way (Dutch flag) partition.
        let mid = lo + (hi - lo) / 2
        let x = a[lo], y = a[mid], z = a[hi]
        let pivot = max(min(x, y), min(max(x, y), z))
        var lt = lo, i = lo, gt = hi
        while i <= gt {
            let v = a[i]
            if v < pivot { a.swapAt(lt, i); lt += 1; i += 1 }
            else if v > pivot { a.swapAt(i, gt); gt -= 1 }
            else { i += 1 }
        }
        if rank < lt { hi = lt - 1 } else if rank > gt { lo = gt + 1 } else { return pivot }
    }
    return a[lo]
}

extension UnsafeMutablePointer {
    @inline(__always)
    fileprivate func swapAt(_ i: Int, _ j: Int) {
        let t = self[i]; self[i] = self[j]; self[j] = t
    }
}
