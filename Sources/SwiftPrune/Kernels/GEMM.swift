import SwiftPruneAVX512
import SwiftPrunePrefetch
import SwiftPruneShuffle

/// General matrix multiply on row-major (C-order) matrices:
/// `C = alpha · op(A) · op(B) + beta · C`, where `op(X)` is `X` or `Xᵀ`.
///
/// `op(A)` is `m × k`, `op(B)` is `k × n`, `C` is `m × n`. Each matrix is
/// addressed by a pointer and a leading dimension (the distance between
/// consecutive rows of the *stored* matrix): with `transA == false`, A is
/// stored `m × k` and `lda ≥ k`; with `transA == true` it is stored `k × m`
/// and `lda ≥ m`; likewise for B. As in BLAS, `beta == 0` overwrites C
/// without reading it (NaN in C does not propagate), and `k == 0` or
/// `alpha == 0` only scales C.
///
/// The algorithm is the Goto/BLIS scheme: op(B) is packed in `KC × NC`
/// blocks (panels of `NR` columns), op(A) in `MC × KC` blocks (panels of
/// `MR` rows) and a register-blocked micro-kernel (``GEMMScalar``) computes
/// `MR × NR` tiles with fused multiply-adds. Float32 on the AVX2 path runs
/// on one worker, and in each worker's row slice, in the sliver order (an A
/// sliver in L1 against an L2-sized block of B:
/// ``GEMMDriver/runSliverOrder(packedB:packedA:scratch:kcMax:ncMax:mcMax:)``),
/// with the same sums. For `Float` on a CPU with
/// AVX-512 (``CPUFeatures/hasAVX512``) the micro-kernel is
/// `GEMMAVX512.microKernel12x32` (6 × 32 when C has fewer than 96 rows) with
/// deeper blocks; the result differs from the AVX2 path's only by the rounding
/// of the depth split (identical for `k ≤ 256`), never by thread count. Large products are split over
/// ``Threading/threadCount`` workers by row blocks of C (or column panels
/// when C has few rows).
///
/// Pointers may be `nil` only when the matrix they address is empty.
/// - Throws: ``SwiftPruneError`` for negative sizes, leading dimensions too
///   small for the shapes, or a `nil` pointer to a non-empty matrix;
///   `.outOfMemory` when the packing buffers (a few MiB) are refused, C then
///   holding a partial result.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func gemm<T: GEMMScalar>(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: T, a: UnsafePointer<T>?, lda: Int,
    b: UnsafePointer<T>?, ldb: Int,
    beta: T, c: UnsafeMutablePointer<T>?, ldc: Int
) throws {
    guard m >= 0, n >= 0, k >= 0 else {
        throw SwiftPruneError.value("gemm: sizes must be non-negative, got m = \(m), n = \(n), k = \(k)")
    }
    let aCols = transA ? m : k, bCols = transB ? k : n
    guard lda >= max(1, aCols), ldb >= max(1, bCols), ldc >= max(1, n) else {
        throw SwiftPruneError.value(
            "gemm: leading dimensions too small (lda = \(lda), ldb = \(ldb), ldc = \(ldc) for m = \(m), n = \(n), k = \(k))")
    }
    guard m > 0, n > 0 else { return }
    guard let c else { throw SwiftPruneError.value("gemm: c is NULL") }
    guard k > 0, alpha != 0 else {
        GEMMDriver<T>.scale(c, m: m, n: n, ldc: ldc, by: beta)
        return
    }
    guard let a, let b else { throw SwiftPruneError.value("gemm: a or b is NULL") }
    // beta == 0: each tile of C is zeroed by the pass that first writes it (in
    // cache, just before its micro-kernel) instead of by a separate pass over C.
    if beta != 0 { GEMMDriver<T>.scale(c, m: m, n: n, ldc: ldc, by: beta) }
    let (mn, o1) = m.multipliedReportingOverflow(by: n)
    let (work, o2) = mn.multipliedReportingOverflow(by: k)
    let workers = (o1 || o2) ? Threading.threadCount
        : Threading.workerCount(for: work, minimumPerWorker: 1 << 21)
    var driver = GEMMDriver<T>(transA: transA, transB: transB, m: m, n: n, k: k,
                               alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc)
    driver.overwrite = beta == 0
    try driver.runChecked(workers: workers)
}

/// The symmetric product `C = alpha · op(A) · op(A)ᵀ` (`op(A)` is `n × k`)
/// written in full: only the upper triangle is computed (about half the work
/// of ``gemm(transA:transB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:)``), then
/// mirrored. `transA == true` gives `AᵀA` for A stored `k × n`: the Gram
/// matrix `XᵀX` of calibration activations or of a weight.
/// - Throws: ``SwiftPruneError`` for negative sizes, a small `lda`/`ldc` or a
///   `nil` pointer to a non-empty matrix; `.outOfMemory` when the packing
///   buffers are refused.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func syrk<T: GEMMScalar>(
    transA: Bool, n: Int, k: Int, alpha: T, a: UnsafePointer<T>?, lda: Int,
    c: UnsafeMutablePointer<T>?, ldc: Int
) throws {
    guard n >= 0, k >= 0 else { throw SwiftPruneError.value("syrk: sizes must be non-negative, got n = \(n), k = \(k)") }
    guard lda >= max(1, transA ? n : k), ldc >= max(1, n) else {
        throw SwiftPruneError.value("syrk: leading dimensions too small (lda = \(lda), ldc = \(ldc))")
    }
    guard n > 0 else { return }
    guard let c else { throw SwiftPruneError.value("syrk: c is NULL") }
    GEMMDriver<T>.scale(c, m: n, n: n, ldc: ldc, by: 0)
    if k > 0 && alpha != 0 {
        guard let a else { throw SwiftPruneError.value("syrk: a is NULL") }
        let (nn, o1) = n.multipliedReportingOverflow(by: n)
        let (work, o2) = nn.multipliedReportingOverflow(by: k)
        let workers = (o1 || o2) ? Threading.threadCount
            : Threading.workerCount(for: work / 2, minimumPerWorker: 1 << 21)
        var driver = GEMMDriver<T>(transA: transA, transB: !transA, m: n, n: n, k: k,
                                   alpha: alpha, a: a, lda: lda, b: a, ldb: lda, c: c, ldc: ldc)
        driver.upperOnly = true
        try driver.runChecked(workers: workers)
    }
    for i in 0 ..< n {
        for j in 0 ..< i { c[i * ldc + j] = c[j * ldc + i] }
    }
}

/// The blocked, packed, multithreaded implementation behind ``gemm(transA:transB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:)``.
struct GEMMDriver<T: GEMMScalar> {
    let transA: Bool, transB: Bool
    /// Compute only the tiles of C that touch its upper triangle (SYRK-style,
    /// for symmetric products such as XᵀX); tiles strictly below are skipped.
    var upperOnly = false
    /// C's previous contents are ignored (`beta == 0`): the first depth block's
    /// pass zeroes each tile just before adding to it (see ``tile``), sparing a
    /// separate zeroing pass over all of C (2.5% of a 2048³ product). The sum
    /// per element is unchanged (`0 + alpha · Σ`).
    var overwrite = false
    let m: Int, n: Int, k: Int
    let alpha: T
    let a: UnsafePointer<T>, lda: Int
    let b: UnsafePointer<T>, ldb: Int
    let c: UnsafeMutablePointer<T>, ldc: Int
    /// Use an AVX-512 micro-kernel (`Float` only, 12 × 32 or 6 × 32 tiles) instead of
    /// ``GEMMScalar/gemmMicroKernel(_:_:_:_:_:_:)``: decided once per call.
    let wide: Bool
    /// The micro-tile: `MR × NR` of ``GEMMScalar``, or 12 × 32 / 6 × 32 when ``wide``.
    let mr: Int, nr: Int
    /// Float32 on the AVX2 path, or float64, with A not transposed and C at
    /// most eight B panels wide (``directAMaxColumns`` for Float): A is read
    /// in place, not packed (`sgemmMicroKernelDirectA` /
    /// `dgemmMicroKernelDirectA`, same results as the packed kernels).
    let directA: Bool
    /// Rows of C per worker from which a packed product is split into row
    /// slices (``runRowSlices(workers:)``, each worker packing its own B)
    /// rather than sharing each packed B block between workers with two
    /// fork-joins per depth block: a worker's extra B packing costs about
    /// 30 / rows of its multiply time (3% at 1024 rows).
    static var packedSliceRows: Int { 1024 }
    /// Up to this many columns of C (eight 16-column panels) a packed A
    /// sliver would be used too few times to repay its copy.
    static var directAMaxColumns: Int { 128 }

    /// Depth of a packed block (the sums over depth are split only here, so
    /// `kc` alone decides the rounding); columns of a packed block of B; rows
    /// of a packed block of A (a multiple of ``mr``). The AVX-512 path takes
    /// deeper and wider blocks: its 6 × 32 tiles halve the passes over C, and
    /// a 512 × 32 B sliver (64 KiB) still streams from L2 at full speed
    /// (measured on a Xeon with 48 KiB L1d, 2 MiB L2: 256/1024/144 →
    /// 512/4096/192 is +10–20% at n = 2048 and 4096).
    var kc: Int { wide ? 512 : 256 }
    var nc: Int { wide ? 4096 : sliverOrder ? Self.sliverBlockColumns : 1024 }
    var mcBlock: Int { wide ? 192 : mr * (MemoryLayout<T>.size == 4 ? 24 : 16) }
    /// This call's packed blocks of op(B): `kc` deep (or all of `k`) and `nc`
    /// columns wide (or all of op(B)'s panels). ``run`` and the shared packed B
    /// (``packWholeB(into:workers:)``) must walk the same blocks.
    var blockDepth: Int { min(kc, k) }
    var blockColumns: Int { min(nc, (n + nr - 1) / nr * nr) }
    /// All of op(B) packed once for the call and shared by the row-slice
    /// workers (``runRowSlices(workers:)``; block `(jc, pc)` at
    /// ``sharedBlockOffset(jc:pc:panels:)``), or nil: ``run`` packs each block itself.
    var prepackedB: UnsafePointer<T>? = nil
    /// Up to this many elements of op(B) (32 MiB of Float) the row-slice workers
    /// share one packed copy of all of B rather than each packing its own.
    static var sharedPackedBMaxCount: Int { 1 << 23 }

    init(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: T,
         a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int,
         c: UnsafeMutablePointer<T>, ldc: Int) {
        self.transA = transA; self.transB = transB
        self.m = m; self.n = n; self.k = k; self.alpha = alpha
        self.a = a; self.lda = lda; self.b = b; self.ldb = ldb; self.c = c; self.ldc = ldc
        wide = T.self == Float.self && CPUFeatures.useAVX512
        // 12 × 32 tiles where C has rows enough; 6 × 32 for short C, where
        // padding a partial 12-row tile would waste more of the work.
        mr = wide && m >= 96 ? 12 : T.gemmMR
        nr = wide ? 32 : T.gemmNR
        directA = !wide && !transA && n <= 8 * T.gemmNR
    }

    /// The micro-kernel of this call: `c[r · ldc + j] += alpha · Σ_p a[p · MR + r] · b[p · NR + j]`.
    @inline(__always)
    func microKernel(_ kc: Int, _ a: UnsafePointer<T>, _ b: UnsafePointer<T>,
                     _ c: UnsafeMutablePointer<T>, _ ldc: Int) {
        if wide && mr == 12 {
            GEMMAVX512.microKernel12x32(
                k: kc, a: UnsafeRawPointer(a).assumingMemoryBound(to: Float.self),
                b: UnsafeRawPointer(b).assumingMemoryBound(to: Float.self),
                alpha: withUnsafeBytes(of: alpha) { $0.load(as: Float.self) },
                c: UnsafeMutableRawPointer(c).assumingMemoryBound(to: Float.self), ldc: ldc)
        } else if wide {
            // wide implies T == Float.
            GEMMAVX512.microKernel6x32(
                k: kc, a: UnsafeRawPointer(a).assumingMemoryBound(to: Float.self),
                b: UnsafeRawPointer(b).assumingMemoryBound(to: Float.self),
                alpha: withUnsafeBytes(of: alpha) { $0.load(as: Float.self) },
                c: UnsafeMutableRawPointer(c).assumingMemoryBound(to: Float.self), ldc: ldc)
        } else {
            T.gemmMicroKernel(kc, a, b, alpha, c, ldc)
        }
    }

    static func scale(_ c: UnsafeMutablePointer<T>, m: Int, n: Int, ldc: Int, by beta: T) {
        if beta == 1 { return }
        for i in 0 ..< m {
            let row = c + i * ldc
            if beta == 0 {
                row.update(repeating: 0, count: n)
            } else {
                for j in 0 ..< n { row[j] *= beta }
            }
        }
    }

    /// `C += alpha · op(A) · op(B)` on `workers` workers.
    /// - Throws: `.outOfMemory` when the packing buffers are refused (the
    ///   fallible allocator); C then holds a partial result.
    func runChecked(workers: Int) throws {
        if workers > 1 && !upperOnly && m >= workers * (directA ? mr : Self.packedSliceRows) {
            try runRowSlices(workers: workers)
            return
        }
        let kcMax = blockDepth
        let ncMax = blockColumns
        // Row blocks split evenly over the workers: the fewest blocks per
        // worker that keep blocks within mcBlock, then the block height that
        // spreads the rows over them (11 blocks on 2 workers would leave one
        // idle for a twelfth of the time).
        let mRounded = (m + mr - 1) / mr * mr
        let sliver = sliverOrder && workers == 1
        var mcMax = min(sliver ? Self.sliverBlockRows / mr * mr : mcBlock, mRounded)
        if workers > 1 && mRounded > mcMax {
            let perWorker = (mRounded + workers * mcMax - 1) / (workers * mcMax)
            let blocks = workers * perWorker
            mcMax = ((mRounded + blocks - 1) / blocks + mr - 1) / mr * mr
        }
        let bCount = prepackedB == nil ? kcMax * ncMax : 0, aCount = workers * mcMax * kcMax
        try ScratchPool.withFallible(T.self, count: bCount + aCount + workers * mr * nr) { workspace in
            if sliver {
                runSliverOrder(packedB: workspace, packedA: workspace + bCount, scratch: workspace + bCount + aCount,
                               kcMax: kcMax, ncMax: ncMax, mcMax: mcMax)
                return
            }
            run(workers: workers, packedB: workspace, packedA: workspace + bCount,
                scratch: workspace + bCount + aCount, kcMax: kcMax, ncMax: ncMax, mcMax: mcMax)
        }
    }

    /// The direct-A case (C at most ``directAMaxColumns`` wide, e.g. a weight
    /// times 64 activation columns), and packed products with at least
    /// ``packedSliceRows`` rows per worker, on several workers: each takes a
    /// slice of C's rows (a multiple of `mr`, so the same tiles are full or
    /// partial as on one worker, and each element's sum runs over the same
    /// depth blocks in the same order: identical results) and runs the whole
    /// depth on its own. One fork-join per call instead of two per depth block
    /// (32 at k = 4096), and no worker waits at a barrier for another that the
    /// OS preempted. B (up to ``sharedPackedBMaxCount`` elements) is first
    /// packed whole, each worker an equal share of every block's panels, into
    /// one copy all workers read (each packing all of B cost a worker about
    /// 3% of its multiply time at 1024 rows); a larger B is packed by each
    /// worker block by block.
    func runRowSlices(workers: Int) throws {
        let panelColumns = (n + nr - 1) / nr * nr
        let (count, overflow) = k.multipliedReportingOverflow(by: panelColumns)
        guard !overflow && count <= Self.sharedPackedBMaxCount else {
            try runRowSlices(workers: workers, prepackedB: nil)
            return
        }
        try ScratchPool.withFallible(T.self, count: count) { packed in
            packWholeB(into: packed, workers: workers)
            try runRowSlices(workers: workers, prepackedB: UnsafePointer(packed))
        }
    }

    /// Where block `(jc, pc)` of the whole packed B starts: the blocks of
    /// columns before `jc` hold `k` rows each of `nc` (a multiple of `nr`)
    /// columns, and this column block's depth blocks before `pc` hold `pc` rows
    /// of `panels · nr`.
    @inline(__always)
    func sharedBlockOffset(jc: Int, pc: Int, panels: Int) -> Int { jc * k + pc * panels * nr }

    /// Packs all of op(B) in the blocks ``run`` walks (see
    /// ``sharedBlockOffset(jc:pc:panels:)``), each worker the same share of
    /// every block's panels.
    func packWholeB(into packed: UnsafeMutablePointer<T>, workers: Int) {
        parallelFor(workers: workers) { worker in
            forEachBlockOfB(kcMax: blockDepth, ncMax: blockColumns) { jc, nc, panels, pc, kc in
                packPanelsOfB(partitionRange(panels, parts: workers, index: worker),
                              into: packed + sharedBlockOffset(jc: jc, pc: pc, panels: panels),
                              jc: jc, nc: nc, pc: pc, kc: kc)
            }
        }
    }

    /// Calls `body(jc, nc, panels, pc, kc)` for each `kc × nc` block of op(B)
    /// (`panels` of `nr` columns), column blocks outermost, as ``run`` takes them.
    @inline(__always)
    func forEachBlockOfB(kcMax: Int, ncMax: Int,
                         _ body: (_ jc: Int, _ nc: Int, _ panels: Int, _ pc: Int, _ kc: Int) -> Void) {
        var jc = 0
        while jc < n {
            let nc = min(ncMax, n - jc)
            let panels = (nc + nr - 1) / nr
            var pc = 0
            while pc < k {
                let kc = min(kcMax, k - pc)
                body(jc, nc, panels, pc, kc)
                pc += kc
            }
            jc += nc
        }
    }

    /// Packs `panels` of the block of op(B) at rows `pc ..< pc + kc`, columns
    /// `jc ..< jc + nc`, into `block` (panel `p` at `p · kc · nr`).
    @inline(__always)
    func packPanelsOfB(_ panels: Range<Int>, into block: UnsafeMutablePointer<T>, jc: Int, nc: Int, pc: Int, kc: Int) {
        for panel in panels {
            packB(into: block + panel * kc * nr, row: pc, kc: kc, column: jc + panel * nr, width: min(nr, nc - panel * nr))
        }
    }

    func runRowSlices(workers: Int, prepackedB: UnsafePointer<T>?) throws {
        let tiles = (m + mr - 1) / mr
        try parallelForThrowing(workers: workers) { worker in
            let slice = partitionRange(tiles, parts: workers, index: worker)
            let first = slice.lowerBound * mr, rows = min(m, slice.upperBound * mr) - first
            guard rows > 0 else { return }
            // Row `first` of op(A): a row of A, or a column of a transposed A.
            let sliceA = transA ? a + first : a + first * lda
            var sliceDriver = GEMMDriver(transA: transA, transB: transB, m: rows, n: n, k: k, alpha: alpha,
                                         a: sliceA, lda: lda, b: b, ldb: ldb, c: c + first * ldc, ldc: ldc)
            sliceDriver.overwrite = overwrite
            sliceDriver.prepackedB = prepackedB
            try sliceDriver.runChecked(workers: 1)
        }
    }

    func run(workers: Int, packedB: UnsafeMutablePointer<T>, packedA: UnsafeMutablePointer<T>,
             scratch: UnsafeMutablePointer<T>, kcMax: Int, ncMax: Int, mcMax: Int) {
        forEachBlockOfB(kcMax: kcMax, ncMax: ncMax) { jc, nc, panels, pc, kc in
            let blockB = prepackedB.map {
                UnsafeMutablePointer(mutating: $0) + sharedBlockOffset(jc: jc, pc: pc, panels: panels)
            } ?? packedB
            if prepackedB == nil {
                let packWorkers = min(workers, panels)
                parallelFor(workers: packWorkers) { worker in
                    packPanelsOfB(partitionRange(panels, parts: packWorkers, index: worker), into: packedB,
                                  jc: jc, nc: nc, pc: pc, kc: kc)
                }
            }
            let mBlocks = (m + mcMax - 1) / mcMax
            parallelFor(workers: workers) { worker in
                let myA = packedA + worker * mcMax * kcMax
                let blocks: Range<Int>, myPanels: Range<Int>
                if mBlocks >= workers {
                    blocks = partitionRange(mBlocks, parts: workers, index: worker)
                    myPanels = 0 ..< panels
                } else {
                    blocks = 0 ..< mBlocks
                    myPanels = partitionRange(panels, parts: workers, index: worker)
                }
                if myPanels.isEmpty { return }
                for block in blocks {
                    let ic = block * mcMax
                    let mc = min(mcMax, m - ic)
                    if !directA { packA(into: myA, row: ic, mc: mc, column: pc, kc: kc) }
                    macroKernel(packedA: myA, mc: mc, row: ic, packedB: blockB, panels: myPanels,
                                nc: nc, column: jc, kc: kc, depth: pc, scratch: scratch + worker * mr * nr)
                }
            }
        }
    }

    /// Packs rows `row ..< row + mc`, columns `column ..< column + kc` of
    /// op(A) into `MR`-row panels, `kc` groups of `MR` each, zero-padded.
    @inline(__always)
    func packA(into dst: UnsafeMutablePointer<T>, row: Int, mc: Int, column: Int, kc: Int) {
        if transA && mr == 6 {
            // op(A)[i, p] = a[p * lda + i]: stored row p holds the block's mc values
            // for depth p contiguously. One sequential pass per stored row, six
            // values at a time into each panel (a panel-by-panel gather would
            // reread every stored row once per panel, six values at a time).
            let full = mc / 6
            if full < (mc + 5) / 6 { (dst + full * 6 * kc).update(repeating: 0, count: 6 * kc) }
            for p in 0 ..< kc {
                let src = a + (column + p) * lda + row
                var out = dst + p * 6
                for panel in 0 ..< full {
                    let from = src + panel * 6
                    out[0] = from[0]; out[1] = from[1]; out[2] = from[2]
                    out[3] = from[3]; out[4] = from[4]; out[5] = from[5]
                    out += 6 * kc
                }
                for r in 0 ..< mc - full * 6 { out[r] = src[full * 6 + r] }
            }
            return
        }
        var panelStart = 0
        while panelStart < mc {
            let rows = min(mr, mc - panelStart)
            let panel = dst + panelStart * kc
            if rows < mr { panel.update(repeating: 0, count: mr * kc) }
            if transA {
                // op(A)[i, p] = a[p * lda + i]: MR values per p are contiguous.
                for p in 0 ..< kc {
                    let src = a + (column + p) * lda + row + panelStart
                    let out = panel + p * mr
                    for r in 0 ..< rows { out[r] = src[r] }
                }
            } else if T.self == Float.self && mr == 6 && rows == 6 && SWIFTPRUNE_HAS_PACK_6X8 != 0 {
                // Eight depth steps of the six rows at a time, transposed in registers
                // (48 scattered 4-byte stores otherwise: 7% of a 2048³ profile).
                let src = UnsafeRawPointer(a + (row + panelStart) * lda + column).assumingMemoryBound(to: Float.self)
                let out = UnsafeMutableRawPointer(panel).assumingMemoryBound(to: Float.self)
                var p = 0
                while p + 8 <= kc {
                    swiftprune_pack_6x8_f32(src + p, lda, out + p * 6)
                    p += 8
                }
                while p < kc {
                    for r in 0 ..< 6 { out[p * 6 + r] = src[r * lda + p] }
                    p += 1
                }
            } else {
                for r in 0 ..< rows {
                    let src = a + (row + panelStart + r) * lda + column
                    var out = panel + r
                    for p in 0 ..< kc { out.pointee = src[p]; out += mr }
                }
            }
            panelStart += mr
        }
    }

    /// Packs rows `row ..< row + kc`, columns `column ..< column + width` of
    /// op(B) as one `NR`-column panel (`kc` groups of `NR`), zero-padded.
    @inline(__always)
    func packB(into panel: UnsafeMutablePointer<T>, row: Int, kc: Int, column: Int, width: Int) {
        if width < nr { panel.update(repeating: 0, count: nr * kc) }
        if transB && T.self == Float.self && width == nr && nr % 8 == 0 && SWIFTPRUNE_HAS_TRANSPOSE_8X8 != 0 {
            // op(B)[p, j] = b[j * ldb + p]: 8 × 8 blocks transposed in registers.
            let src = UnsafeRawPointer(b + column * ldb + row).assumingMemoryBound(to: Float.self)
            let out = UnsafeMutableRawPointer(panel).assumingMemoryBound(to: Float.self)
            var p = 0
            while p + 8 <= kc {
                for j in stride(from: 0, to: nr, by: 8) {
                    swiftprune_transpose_8x8_f32(src + j * ldb + p, ldb, out + p * nr + j, nr)
                }
                p += 8
            }
            while p < kc {
                for j in 0 ..< nr { out[p * nr + j] = src[j * ldb + p] }
                p += 1
            }
        } else if transB {
            // op(B)[p, j] = b[j * ldb + p]
            for j in 0 ..< width {
                let src = b + (column + j) * ldb + row
                var out = panel + j
                for p in 0 ..< kc { out.pointee = src[p]; out += nr }
            }
        } else if width == nr {
            // 32-byte vector copies (a memmove call per 64-byte row cost 3% of a 2048³ profile).
            let bytes = nr * MemoryLayout<T>.stride
            for p in 0 ..< kc {
                let src = UnsafeRawPointer(b + (row + p) * ldb + column)
                let out = UnsafeMutableRawPointer(panel + p * nr)
                var offset = 0
                while offset < bytes {
                    out.storeBytes(of: src.loadUnaligned(fromByteOffset: offset, as: SIMD32<UInt8>.self),
                                   toByteOffset: offset, as: SIMD32<UInt8>.self)
                    offset += 32
                }
            }
        } else {
            for p in 0 ..< kc {
                (panel + p * nr).update(from: b + (row + p) * ldb + column, count: width)
            }
        }
    }

    @inline(__always)
    func macroKernel(packedA: UnsafeMutablePointer<T>, mc: Int, row: Int,
                     packedB: UnsafeMutablePointer<T>, panels: Range<Int>, nc: Int, column: Int, kc: Int,
                     depth: Int, scratch: UnsafeMutablePointer<T>) {
        if directA {
            // A read in place: each six-row sliver of A meets every B panel while it is
            // in L1 (rows of A lie `lda` apart, so a whole block of them shares a few
            // cache sets and does not survive in L2 until the next panel's pass), and
            // the B panels, packed contiguously, stream from L2. Same tiles, same
            // operations inside each: bit-identical to the panel-major order.
            var i0 = 0
            while i0 < mc {
                for panel in panels {
                    // With upperOnly, tiles entirely below the diagonal are skipped.
                    if upperOnly && row + i0 > column + panel * nr + nr - 1 { continue }
                    tile(packedA: packedA, mc: mc, row: row, packedB: packedB, panel: panel,
                         first: panels.lowerBound, i0: i0, nc: nc, column: column, kc: kc, depth: depth,
                         scratch: scratch)
                }
                i0 += mr
            }
            return
        }
        for panel in panels {
            // With upperOnly, row blocks entirely below this panel are skipped.
            let lastColumn = column + panel * nr + nr - 1
            var i0 = 0
            while i0 < mc {
                if upperOnly && row + i0 > lastColumn { break }
                tile(packedA: packedA, mc: mc, row: row, packedB: packedB, panel: panel,
                     first: panels.lowerBound, i0: i0, nc: nc, column: column, kc: kc, depth: depth,
                     scratch: scratch)
                i0 += mr
            }
        }
    }

    /// The tile of C at rows `row + i0 ..< row + i0 + mr` of the block, columns of B panel `panel`
    /// (`first`: the first panel of this worker's pass, whose tile prefetches the next rows of A).
    @inline(__always)
    func tile(packedA: UnsafeMutablePointer<T>, mc: Int, row: Int, packedB: UnsafeMutablePointer<T>,
              panel: Int, first: Int, i0: Int, nc: Int, column: Int, kc: Int, depth: Int,
              scratch: UnsafeMutablePointer<T>) {
        let j0 = panel * nr
        let cols = min(nr, nc - j0)
        let bPanel = UnsafePointer(packedB + panel * kc * nr)
        let rows = min(mr, mc - i0)
        let aPanel = UnsafePointer(packedA + i0 * kc)
        let cTile = c + (row + i0) * ldc + column + j0
        if overwrite && depth == 0 { Self.zero(cTile, rows: rows, cols: cols, ldc: ldc, full: rows == mr && cols == nr) }
        if directA && T.self == Double.self {
            // A rows read in place (float64).
            let aRows = UnsafeRawPointer(a + (row + i0) * lda + depth).assumingMemoryBound(to: Double.self)
            let bDouble = UnsafeRawPointer(bPanel).assumingMemoryBound(to: Double.self)
            let alphaDouble = withUnsafeBytes(of: alpha) { $0.load(as: Double.self) }
            edgeAware(rows: rows, cols: cols, cTile: cTile, scratch: scratch) { out, ldOut, full in
                dgemmMicroKernelDirectA(kc, aRows, lda, rows: rows, bDouble, alphaDouble,
                                        UnsafeMutableRawPointer(out).assumingMemoryBound(to: Double.self), ldOut)
            }
        } else if directA {
            // T == Float (see `directA`); A rows read in place.
            let aRows = UnsafeRawPointer(a + (row + i0) * lda + depth).assumingMemoryBound(to: Float.self)
            let bFloat = UnsafeRawPointer(bPanel).assumingMemoryBound(to: Float.self)
            let alphaFloat = withUnsafeBytes(of: alpha) { $0.load(as: Float.self) }
            // The first panel's pass of a full tile prefetches the next six rows of A.
            let ahead = panel == first && i0 + 2 * mr <= mc ? aRows + mr * lda : nil
            edgeAware(rows: rows, cols: cols, cTile: cTile, scratch: scratch) { out, ldOut, full in
                sgemmMicroKernelDirectA(kc, aRows, lda, rows: rows, bFloat, alphaFloat,
                                        UnsafeMutableRawPointer(out).assumingMemoryBound(to: Float.self), ldOut,
                                        ahead: full ? ahead : nil)
            }
        } else if rows == mr && cols == nr {
            // Prefetch the next tile's rows of C: they arrive while this
            // micro-kernel runs instead of stalling its final update. (Plain
            // loads used as a touch held up retirement on every miss: 5% of
            // a 2048³ profile.)
            // On the AVX2 path into L2 only: six rows `ldc` apart (8 KiB at 2048
            // columns) share one L1 set, where twelve prefetched lines evicted the
            // B panel (with the next-panel prefetch below and the shared packed B,
            // 2048³ went from 0.87x to 0.89x NumPy's CPU time at 1 thread and from
            // 0.89x to 0.97x at 2, medians of a loaded A/B: README, round 9). The
            // AVX-512 path, not measurable here, keeps its prefetch into L1.
            if i0 + 2 * mr <= mc {
                let next = cTile + mr * ldc
                for r in 0 ..< mr {
                    if wide {
                        swiftprune_prefetch_write(next + r * ldc)
                        swiftprune_prefetch_write(next + r * ldc + nr - 1)
                    } else {
                        swiftprune_prefetch_read_l2(next + r * ldc)
                        swiftprune_prefetch_read_l2(next + r * ldc + nr - 1)
                    }
                }
            }
            if !wide && (panel + 1) * nr < nc { prefetchNextPanel(of: packedB, after: panel, kc: kc, mc: mc, i0: i0) }
            microKernel(kc, aPanel, bPanel, cTile, ldc)
        } else {
            edgeAware(rows: rows, cols: cols, cTile: cTile, scratch: scratch) { out, ldOut, _ in
                microKernel(kc, aPanel, bPanel, out, ldOut)
            }
        }
    }

    /// Brings this tile's share of the next B panel into L2: the panel is
    /// streamed from L3 (a `kc × nc` block of B is larger than L2) and would
    /// otherwise stall the first tile that reads it; spread over the block's
    /// `⌈mc / mr⌉` tiles (11 lines each for 256 × 16 floats over 24 tiles), it
    /// has arrived when the pass over this panel ends. L2, not L1: the
    /// current panel must stay in L1.
    @inline(__always)
    func prefetchNextPanel(of packedB: UnsafeMutablePointer<T>, after panel: Int, kc: Int, mc: Int, i0: Int) {
        let lineBytes = 64
        let lines = (kc * nr * MemoryLayout<T>.stride + lineBytes - 1) / lineBytes
        let tiles = (mc + mr - 1) / mr
        let perTile = (lines + tiles - 1) / tiles
        let first = i0 / mr * perTile
        let next = UnsafeRawPointer(packedB + (panel + 1) * kc * nr)
        var line = first
        while line < min(first + perTile, lines) {
            swiftprune_prefetch_read_l2(next + line * lineBytes)
            line += 1
        }
    }

    /// Zeroes a `rows × cols` tile of C (a full `mr × nr` tile by 32-byte vector stores).
    @inline(__always)
    static func zero(_ tile: UnsafeMutablePointer<T>, rows: Int, cols: Int, ldc: Int, full: Bool) {
        let bytes = cols * MemoryLayout<T>.stride
        if full && bytes % 32 == 0 {
            for r in 0 ..< rows {
                let out = UnsafeMutableRawPointer(tile + r * ldc)
                var offset = 0
                while offset < bytes {
                    out.storeBytes(of: SIMD32<UInt8>(), toByteOffset: offset, as: SIMD32<UInt8>.self)
                    offset += 32
                }
            }
        } else {
            for r in 0 ..< rows { (tile + r * ldc).update(repeating: 0, count: cols) }
        }
    }

    /// Runs `kernel(out, ldOut, full)` on the C tile itself when it is a full
    /// `mr × nr` tile, else on the zeroed scratch tile (row stride `nr`) whose
    /// `rows × cols` corner is then added to C: a micro-kernel always writes a
    /// whole tile, and the edge tiles of C are smaller.
    @inline(__always)
    func edgeAware(rows: Int, cols: Int, cTile: UnsafeMutablePointer<T>, scratch: UnsafeMutablePointer<T>,
                   _ kernel: (_ out: UnsafeMutablePointer<T>, _ ldOut: Int, _ full: Bool) -> Void) {
        if rows == mr && cols == nr {
            kernel(cTile, ldc, true)
            return
        }
        scratch.update(repeating: 0, count: mr * nr)
        kernel(scratch, nr, false)
        for r in 0 ..< rows {
            for j in 0 ..< cols { cTile[r * ldc + j] += scratch[r * nr + j] }
        }
    }
}
