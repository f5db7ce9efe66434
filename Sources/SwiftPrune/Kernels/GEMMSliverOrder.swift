import SwiftPrunePrefetch

/// The float32 AVX2 GEMM's loop order on one worker: each pair of packed
/// six-row slivers of A stays in L1 while it meets every 16-column panel of
/// an L2-sized block of B, the tiles of C walked along its rows.
///
/// The general order (``GEMMDriver/run(workers:packedB:packedA:scratch:kcMax:ncMax:mcMax:)``,
/// BLIS's) keeps a B panel in L1 and walks a 144-row block of A down C's
/// columns: every tile starts six rows further down C (six new rows of
/// 64 bytes, `ldc` apart), and the 1 MiB block of B streams from L3. Here the
/// block of B (`kc × sliverBlockColumns`, 384 KiB at 256 × 384) stays in
/// L2, A is packed once per depth block for all of this worker's rows, and
/// the tiles of a sliver follow each other along the same six rows of C (the order of
/// OpenBLAS's Haswell SGEMM, which NumPy runs here). Each element's sum runs
/// over the same depth blocks in the same order, through the same
/// micro-kernel: bit-identical to the general order. Measured at 2048³
/// against the general order (one process, calls interleaved with NumPy's,
/// CPU-time medians, loaded VM): +1.5–5% at 1 thread, +6% at 2, before the
/// pairing of slivers (``sliverGroup``).
extension GEMMDriver {
    /// Columns of a block of B in the sliver order: `256 × 384` floats
    /// (384 KiB) stay in Zen 3's 512 KiB L2 with room for the A sliver and C.
    static var sliverBlockColumns: Int { 384 }
    /// Rows of A packed at a time in the sliver order (4 MiB at `kc = 256`;
    /// 682 whole slivers: the packed block must be a multiple of `mr` rows, its
    /// last sliver zero-padded to `mr`): up to this many rows B is packed once
    /// per call on one worker.
    static var sliverBlockRows: Int { 4092 }
    /// Slivers of A that meet each B panel in turn while it is in L1 (12 KiB
    /// of A and the 16 KiB panel in Zen 3's 32 KiB L1d): the panel comes from
    /// L2 once per pair of slivers. Two measured +2.4% over one (median of four
    /// in-process A/B runs at 2048³, 1 and 2 threads), three +0.8% (one run).
    static var sliverGroup: Int { 2 }

    /// This call takes the sliver order on one worker: float32, the AVX2
    /// 6 × 16 kernel on packed A (the AVX-512 path, float64, the direct-A
    /// case and the upper-triangle product keep the general order).
    var sliverOrder: Bool { T.self == Float.self && !wide && !directA && !upperOnly }

    /// `C += alpha · op(A) · op(B)` on this worker in the sliver order:
    /// for each block of rows (`mcMax`), each depth block: A packed
    /// (`packedA`, `mcMax × kcMax`), then for each block of B (the shared
    /// packed B, or packed into `packedB`) each sliver of A runs over every panel.
    func runSliverOrder(packedB: UnsafeMutablePointer<T>, packedA: UnsafeMutablePointer<T>,
                        scratch: UnsafeMutablePointer<T>, kcMax: Int, ncMax: Int, mcMax: Int) {
        var ic = 0
        while ic < m {
            let mc = min(mcMax, m - ic)
            var pc = 0
            while pc < k {
                let kc = min(kcMax, k - pc)
                packA(into: packedA, row: ic, mc: mc, column: pc, kc: kc)
                var jc = 0
                while jc < n {
                    let nc = min(ncMax, n - jc)
                    let panels = (nc + nr - 1) / nr
                    let blockB: UnsafeMutablePointer<T>
                    if let prepackedB {
                        blockB = UnsafeMutablePointer(mutating: prepackedB) + sharedBlockOffset(jc: jc, pc: pc, panels: panels)
                    } else {
                        packPanelsOfB(0 ..< panels, into: packedB, jc: jc, nc: nc, pc: pc, kc: kc)
                        blockB = packedB
                    }
                    // Slivers in groups that share each B panel while it is in L1 (read
                    // from L2 once per group instead of once per sliver).
                    var i0 = 0
                    while i0 < mc {
                        let group = min(Self.sliverGroup, (mc - i0 + mr - 1) / mr)
                        for panel in 0 ..< panels {
                            for s in 0 ..< group {
                                sliverTile(packedA: packedA, mc: mc, row: ic, packedB: blockB, panel: panel,
                                           panels: panels, i0: i0, group: group, sliver: s, nc: nc, column: jc,
                                           kc: kc, depth: pc, scratch: scratch)
                            }
                        }
                        i0 += group * mr
                    }
                    jc += nc
                }
                pc += kc
            }
            ic += mc
        }
    }

    /// The tile of C at rows of sliver `sliver` of the group of `group` slivers
    /// starting at row `row + i0`, columns of B panel `panel` of `panels`, in
    /// the sliver order: a full tile prefetches the next tile's rows of C (the
    /// group's next sliver, its first sliver's next panel, or the next group's
    /// first tile) into L2, and its share of the next group of packed A (spread
    /// over this group's tiles, from L3 into L2).
    @inline(__always)
    func sliverTile(packedA: UnsafeMutablePointer<T>, mc: Int, row: Int, packedB: UnsafeMutablePointer<T>,
                    panel: Int, panels: Int, i0 groupStart: Int, group: Int, sliver: Int, nc: Int, column: Int,
                    kc: Int, depth: Int, scratch: UnsafeMutablePointer<T>) {
        let i0 = groupStart + sliver * mr
        let j0 = panel * nr
        let cols = min(nr, nc - j0), rows = min(mr, mc - i0)
        guard rows == mr && cols == nr else {
            tile(packedA: packedA, mc: mc, row: row, packedB: packedB, panel: panel, first: 0, i0: i0,
                 nc: nc, column: column, kc: kc, depth: depth, scratch: scratch)
            return
        }
        let cTile = c + (row + i0) * ldc + column + j0
        if overwrite && depth == 0 { Self.zero(cTile, rows: rows, cols: cols, ldc: ldc, full: true) }
        let nextGroup = groupStart + group * mr
        // (Only whole tiles of C: a partial sliver's rows past its last would lie past C.)
        let next: UnsafeMutablePointer<T>?
        if sliver + 1 < group {
            next = i0 + 2 * mr <= mc ? cTile + mr * ldc : nil
        } else if panel + 1 < panels {
            next = c + (row + groupStart) * ldc + column + j0 + nr
        } else {
            next = nextGroup + mr <= mc ? c + (row + nextGroup) * ldc + column : nil
        }
        if let next {
            for r in 0 ..< mr {
                swiftprune_prefetch_read_l2(next + r * ldc)
                swiftprune_prefetch_read_l2(next + r * ldc + nr - 1)
            }
        }
        if nextGroup + mr <= mc {
            let nextRows = min(group * mr, (mc - nextGroup) / mr * mr)
            prefetchShare(of: packedA + nextGroup * kc, count: nextRows * kc,
                          tile: panel * group + sliver, tiles: panels * group)
        }
        microKernel(kc, UnsafePointer(packedA + i0 * kc), UnsafePointer(packedB + panel * kc * nr), cTile, ldc)
    }

    /// Brings share `tile` of `tiles` of the `count` values at `start` (the
    /// next group of packed A, 96 lines per sliver at `kc = 256`) into L2:
    /// the packed block of A (2 MiB for 2048 rows) lives in L3, and the
    /// micro-kernel's own prefetch runs only a few depth steps ahead.
    @inline(__always)
    func prefetchShare(of start: UnsafeMutablePointer<T>, count: Int, tile: Int, tiles: Int) {
        let lineBytes = 64
        let lines = (count * MemoryLayout<T>.stride + lineBytes - 1) / lineBytes
        let perTile = (lines + tiles - 1) / tiles
        let first = tile * perTile
        let bytes = UnsafeRawPointer(start)
        var line = first
        while line < min(first + perTile, lines) {
            swiftprune_prefetch_read_l2(bytes + line * lineBytes)
            line += 1
        }
    }
}
