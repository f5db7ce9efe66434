import SwiftPrunePrefetch

/// The AVX2 chunk kernel of ``CSRMatrix``'s blocked product (the
/// `chunkKernel` of ``blockedSparseProduct``) for full 64-column tiles.
///
/// For each row of the chunk it takes the nonzeros from the row's cursor up
/// to the block's last column, as ``sparseRowTimesDense`` does after the
/// driver's separate cursor scan, but in one pass: the scan is the loop
/// condition, so each index is read once. The 64 outputs of a row stay in
/// eight 8-float registers; while one nonzero's row of `x` is multiplied,
/// the row of `x` four nonzeros ahead is prefetched, and so are the values
/// and indices this block takes from the row two ahead (``segmentLines(expectedNonzeros:)``
/// lines from its cursor: with blocks of `x` a row is read a segment per
/// block, too short and scattered for the hardware prefetcher; in a C model
/// of this loop, 90%-sparse 4096² @ 4096×64, 512-row blocks, 5 interleaved
/// rounds on the shared VM, median 11.2 → 9.3 ms against one line of the
/// next row). In the profile of a 90%-sparse 4096² @ 4096×64
/// the separate scan took 15% of the time (its loads were the index
/// stream's cache misses) and half of the multiply-adds waited on the first
/// line of their `x` row. Each output lane adds the same products in the same
/// order as ``sparseRowTimesDense``: results are bit-identical.
enum CSRChunkKernel {
    /// Nonzeros ahead whose row of `x` is prefetched.
    static let prefetchDistance = 4

    /// Rows ahead whose block segment (values and indices) is prefetched.
    static let segmentAhead = 2

    /// Cache lines of values to prefetch per row segment: those of the
    /// `expectedNonzeros` a row holds in a block on average, one more for a
    /// start inside a line, at most 8 (the indices take as many bytes as
    /// their width needs).
    static func segmentLines(expectedNonzeros: Double) -> Int {
        guard expectedNonzeros.isFinite, expectedNonzeros > 0 else { return 1 }
        return Int(min(7, (expectedNonzeros * 4 / 64).rounded(.up))) + 1
    }

    /// Rows `0 ..< rowCount` of a chunk over one block; `cursors[r]` is row
    /// `r`'s next nonzero (advanced past the block), `rowEnds[r]` its end,
    /// `limit` the block's end column (indices Int32 or UInt16), `x` the block (rows from `columnBase`,
    /// `stride` floats apart, 64 columns wide), `y` the first row's 64
    /// outputs, rows `yStride` apart (`+=` when `accumulate`).
    @inline(never)
    @_specialize(where Index == Int32)
    @_specialize(where Index == UInt16)
    static func rows64<Index: CSRColumnIndex>(
        rowCount: Int, values: UnsafePointer<Float>, indices: UnsafePointer<Index>,
        cursors: UnsafeMutablePointer<Int>, rowEnds: UnsafePointer<Int64>, limit: Int,
        x: UnsafePointer<Float>, stride: Int, columnBase: Int,
        y: UnsafeMutablePointer<Float>, yStride: Int, accumulate: Bool, segmentLines: Int
    ) {
        typealias V = SIMD8<Float>
        @inline(__always) func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
        @inline(__always) func store(_ v: V, _ p: UnsafeMutablePointer<Float>) {
            UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
        }
        let distance = prefetchDistance
        let indexLines = (segmentLines &* MemoryLayout<Index>.size &+ 3) / 4
        // The block's values and indices of row `r`, which start at its cursor.
        @inline(__always) func prefetchSegment(_ r: Int) {
            let valueBytes = UnsafeRawPointer(values + cursors[r]), indexBytes = UnsafeRawPointer(indices + cursors[r])
            var line = 0
            while line < segmentLines { swiftprune_prefetch_read(valueBytes + line &* 64); line &+= 1 }
            line = 0
            while line < indexLines { swiftprune_prefetch_read(indexBytes + line &* 64); line &+= 1 }
        }
        for r in 0 ..< min(segmentAhead, rowCount) { prefetchSegment(r) }
        for r in 0 ..< rowCount {
            var t = cursors[r]
            let rowEnd = Int(rowEnds[r])
            if r &+ segmentAhead < rowCount { prefetchSegment(r &+ segmentAhead) }
            let out = y + r &* yStride
            var a0 = V(), a1 = V(), a2 = V(), a3 = V(), a4 = V(), a5 = V(), a6 = V(), a7 = V()
            if accumulate {
                a0 = load(out); a1 = load(out + 8); a2 = load(out + 16); a3 = load(out + 24)
                a4 = load(out + 32); a5 = load(out + 40); a6 = load(out + 48); a7 = load(out + 56)
            }
            while t < rowEnd {
                let column = Int(indices[t])
                if column >= limit { break }
                if t &+ distance < rowEnd {
                    // A prefetch never faults, so a column past the block costs nothing wrong.
                    let ahead = x + (Int(indices[t &+ distance]) &- columnBase) &* stride
                    swiftprune_prefetch_read(ahead)
                    swiftprune_prefetch_read(ahead + 16)
                    swiftprune_prefetch_read(ahead + 32)
                    swiftprune_prefetch_read(ahead + 48)
                }
                let v = V(repeating: values[t])
                let p = x + (column &- columnBase) &* stride
                a0.addProduct(v, load(p)); a1.addProduct(v, load(p + 8))
                a2.addProduct(v, load(p + 16)); a3.addProduct(v, load(p + 24))
                a4.addProduct(v, load(p + 32)); a5.addProduct(v, load(p + 40))
                a6.addProduct(v, load(p + 48)); a7.addProduct(v, load(p + 56))
                t &+= 1
            }
            cursors[r] = t
            store(a0, out); store(a1, out + 8); store(a2, out + 16); store(a3, out + 24)
            store(a4, out + 32); store(a5, out + 40); store(a6, out + 48); store(a7, out + 56)
        }
    }
}
