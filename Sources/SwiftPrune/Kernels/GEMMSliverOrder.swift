import SwiftPrunePrefetch

/// The float32 AVX2 GEMM's loop order on one worker: each packed six-row
/// sliver of A stays in L1 while it meets every 16-column panel of an
/// L2-sized block of B, the tiles of C walked along its rows.
///
/// The general order (``GEMMDriver/run(workers:packedB:packedA:scratch:kcMax:ncMax:mcMax:)``,
/// BLIS's) keeps a B panel in L1 and walks a 144-row block of A down C's
/// columns: every tile starts six rows further down C (six new rows of
/// 64 bytes, `ldc` apart), and the 1 MiB block of B streams from L3. Here the
/// block of B (`kc × sliverBlockColumns`, 384 KiB at 256 × 384) stays in L2, A is packed
/// once per depth block for all of this worker's rows, and the tiles of a
/// sliver follow each other along the same six rows of C (the order of
/// OpenBLAS's Haswell SGEMM, which NumPy runs here). Each element's sum runs
/// over the same depth blocks in the same order, through the same
/// micro-kernel: bit-identical to the general order.
extension GEMMDriver {
    /// Columns of a block of B in the sliver order: `256 × 384` floats
    /// (384 KiB) stay in Zen 3's 512 KiB L2 with room for the A sliver and C.
    static var sliverBlockColumns: Int { 384 }
    /// Rows of A packed at a time in the sliver order (4 MiB at `kc = 256`;
    /// 682 whole slivers: the packed block must be a multiple of `mr` rows, its
    /// last sliver zero-padded to `mr`): up to this many rows B is packed once
    /// per call on one worker.
    static var sliverBlockRows: Int { 4092 }

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
                    var i0 = 0
                    while i0 < mc {
                        for panel in 0 ..< panels {
                            sliverTile(packedA: packedA, mc: mc, row: ic, packedB: blockB, panel: panel, panels: panels,
                                       i0: i0, nc: nc, column: jc, kc: kc, depth: pc, scratch: scratch)
                        }
                        i0 += mr
                    }
                    jc += nc
                }
                pc += kc
            }
            ic += mc
        }
    }

    /// The tile of C at rows `row + i0 ..< row + i0 + mr`, columns of B panel
    /// `panel` of `panels`, in the sliver order: a full tile prefetches the
    /// next tile's rows of C (the next 16 columns of the same rows, or the
    /// next sliver's first tile) into L2 and its share of the next sliver of
    /// packed A (spread over this sliver's tiles, from L3 into L2).
    @inline(__always)
    func sliverTile(packedA: UnsafeMutablePointer<T>, mc: Int, row: Int, packedB: UnsafeMutablePointer<T>,
                    panel: Int, panels: Int, i0: Int, nc: Int, column: Int, kc: Int, depth: Int,
                    scratch: UnsafeMutablePointer<T>) {
        let j0 = panel * nr
        let cols = min(nr, nc - j0), rows = min(mr, mc - i0)
        guard rows == mr && cols == nr else {
            tile(packedA: packedA, mc: mc, row: row, packedB: packedB, panel: panel, first: 0, i0: i0,
                 nc: nc, column: column, kc: kc, depth: depth, scratch: scratch)
            return
        }
        let cTile = c + (row + i0) * ldc + column + j0
        if overwrite && depth == 0 { Self.zero(cTile, rows: rows, cols: cols, ldc: ldc, full: true) }
        let next: UnsafeMutablePointer<T>? = panel + 1 < panels ? cTile + nr
            : i0 + 2 * mr <= mc ? c + (row + i0 + mr) * ldc + column : nil
        if let next {
            for r in 0 ..< mr {
                swiftprune_prefetch_read_l2(next + r * ldc)
                swiftprune_prefetch_read_l2(next + r * ldc + nr - 1)
            }
        }
        if i0 + 2 * mr <= mc { prefetchNextSliver(of: packedA, after: i0, kc: kc, panel: panel, panels: panels) }
        microKernel(kc, UnsafePointer(packedA + i0 * kc), UnsafePointer(packedB + panel * kc * nr), cTile, ldc)
    }

    /// Brings this tile's share of the next sliver of packed A (`mr × kc`
    /// values, 96 lines at `kc = 256`) into L2, spread over the current
    /// sliver's `panels` tiles: the packed block of A (2 MiB for 2048 rows)
    /// lives in L3, and the micro-kernel's own prefetch runs only a few
    /// depth steps ahead.
    @inline(__always)
    func prefetchNextSliver(of packedA: UnsafeMutablePointer<T>, after i0: Int, kc: Int, panel: Int, panels: Int) {
        let lineBytes = 64
        let lines = (kc * mr * MemoryLayout<T>.stride + lineBytes - 1) / lineBytes
        let perTile = (lines + panels - 1) / panels
        let first = panel * perTile
        let next = UnsafeRawPointer(packedA + (i0 + mr) * kc)
        var line = first
        while line < min(first + perTile, lines) {
            swiftprune_prefetch_read_l2(next + line * lineBytes)
            line += 1
        }
    }
}
