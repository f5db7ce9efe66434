/// The back-transformation of the symmetric eigensolver: eigenvectors of the
/// tridiagonal matrix (rows of `Zᵀ`) become eigenvectors of the original
/// matrix, `Zᵀ ← Zᵀ H_{n-3} ⋯ H_0` (LAPACK `dormtr`), with the reflectors in
/// blocks of ``CompactWYBlocks/width`` written in compact WY form.
extension SymmetricEigen {
    /// Each row z (an eigenvector of T) becomes Q z = H_0 (H_1 (⋯ H_{n-3} z)),
    /// i.e. `Zᵀ ← Zᵀ H_{n-3} ⋯ H_0`, in blocks of reflectors written in
    /// compact WY form (``CompactWYBlocks``), so that almost all the work is GEMMs.
    ///
    /// Rows of `Zᵀ` are transformed independently, so they are taken in
    /// chunks small enough to stay in L2 while *every* block of reflectors
    /// passes over them (each worker its own chunks): applying one block to
    /// all of `Zᵀ` at a time would stream the whole matrix through memory
    /// twice per block, and its depth-`nb` GEMMs would wait on it.
    ///
    /// Each chunk is worked on in a copy whose rows are ``paddedStride(_:)``
    /// apart: the product `Z V` reads six rows of `Z` in place, and at
    /// `n = 1024` rows 8 KiB apart share the L1 sets that the packed `V`
    /// panel also needs (that product ran at 60% of the speed of the others).
    ///
    /// `rows` (default `n`): how many rows of `Zᵀ` (`n` apart) `zt` points at.
    /// - Throws: `.outOfMemory` if the blocks or a GEMM's packing buffer cannot be allocated.
    static func backTransform(reflectors a: UnsafePointer<Double>, tau: [Double],
                              zt: UnsafeMutablePointer<Double>, n: Int, rows rowCount: Int? = nil) throws {
        let rowCount = rowCount ?? n
        guard rowCount > 0, n > 2 else { return }
        let blocks = try CompactWYBlocks(reflectors: a, tau: tau, n: n)
        defer { blocks.deallocate() }
        let nb = CompactWYBlocks.width
        // Chunks of rows of Zᵀ: ~256 KiB each, a multiple of the GEMM's 6-row tile.
        let chunk = max(48, (32768 / max(1, n)) / 6 * 6)
        let chunks = (rowCount + chunk - 1) / chunk
        let workers = min(chunks, Threading.workerCount(for: rowCount * n * n, minimumPerWorker: 1 << 22))
        let ldz = paddedStride(n), perWorker = chunk * ldz + 2 * chunk * nb
        // Every worker's chunk copy and two panels in one allocation: one refusal before any work
        // (allocated in the workers, the peak would be the same, the failure later).
        let scratch = try FallibleAllocation.allocate(Double.self, count: workers * perWorker,
                                                      "the back-transformation's rows")
        defer { FallibleAllocation.free(scratch) }
        // A refused GEMM packing buffer ends its worker and is thrown after the join.
        try parallelForThrowing(workers: workers) { worker in
            let z = scratch + worker * perWorker, w = z + chunk * ldz
            for c in partitionRange(chunks, parts: workers, index: worker) {
                let r0 = c * chunk, rows = min(chunk, rowCount - r0)
                for r in 0 ..< rows { (z + r * ldz).update(from: zt + (r0 + r) * n, count: n) }
                for q in (0 ..< blocks.count).reversed() {
                    try blocks.apply(q, to: z, ldz: ldz, rows: rows, work: w, work2: w + chunk * nb)
                }
                for r in 0 ..< rows { (zt + (r0 + r) * n).update(from: z + r * ldz, count: n) }
            }
        }
    }

    /// A row stride of at least `n` doubles, a whole number of 64-byte lines,
    /// that is not a multiple of 512 bytes: consecutive rows then start on
    /// different L1 sets.
    static func paddedStride(_ n: Int) -> Int {
        let lines = (n + 7) / 8 * 8
        return lines % 64 == 0 ? lines + 8 : lines
    }
}

/// The reflectors `H_0 ⋯ H_{n-3}` of a tridiagonalization in blocks of
/// ``width``, each in compact WY form `H_{k0} ⋯ H_{k0+b-1} = I − V T Vᵀ`
/// (LAPACK `dlarft`), with the `B` operands of the three GEMMs that apply a
/// block to rows of `Zᵀ` (``apply(_:to:ldz:rows:work:work2:)``) packed once:
/// every chunk of rows of `Zᵀ` meets every block, and repacking `V` (twice,
/// once transposed by scalar gathers) for each chunk cost as much as a
/// quarter of the GEMMs' time (perf, 1024² SVD). Packing only copies, so
/// the products are bit-identical to packing on the fly.
struct CompactWYBlocks {
    /// Reflectors per block.
    static let width = 32

    /// The matrix order and the number of reflectors (`n − 2`).
    let n: Int, reflectors: Int
    /// Number of blocks.
    var count: Int { (reflectors + Self.width - 1) / Self.width }

    /// Where block `q`'s pieces start in `storage`: `T` (`b × b`, upper
    /// triangular), then the packed `V`, `Tᵀ` and `Vᵀ`. (`Vᵀ` itself, `b ×
    /// length` with row `j` = `v_{k0+j}` on coordinates `k0+1 ..< n`, zero
    /// before its leading 1, is only needed to build them: it lives in a
    /// worker's scratch while its block is built, so that the blocks take
    /// about `n²` doubles, not `1.5 n²`.)
    struct Layout { var t = 0, packedV = 0, packedT = 0, packedVt = 0, end = 0 }
    private let layout: [Layout]
    private let storage: UnsafeMutablePointer<Double>

    /// Block `q`'s first reflector, reflector count and vector length.
    func first(_ q: Int) -> Int { q * Self.width }
    func size(_ q: Int) -> Int { min(Self.width, reflectors - q * Self.width) }
    func length(_ q: Int) -> Int { n - q * Self.width - 1 }

    /// Builds the blocks from the reflectors of
    /// ``SymmetricEigen/tridiagonalize(_:n:d:e:tau:from:)`` (row `k` of `a`,
    /// entries `k+1 ..< n`, with `tau[k]`), blocks split over workers.
    /// - Throws: `.outOfMemory` if the storage cannot be allocated.
    init(reflectors a: UnsafePointer<Double>, tau: [Double], n: Int) throws {
        self.n = n
        reflectors = max(0, n - 2)
        let blocks = (reflectors + Self.width - 1) / Self.width
        var layout = try [Layout](fallibleRepeating: Layout(), count: blocks, "the back-transformation's blocks")
        var offset = 0
        for q in 0 ..< blocks {
            let b = min(Self.width, reflectors - q * Self.width), length = n - q * Self.width - 1
            var l = Layout()
            l.t = offset
            l.packedV = l.t + b * b
            l.packedT = l.packedV + Self.packedCount(depth: length, columns: b)
            l.packedVt = l.packedT + Self.packedCount(depth: b, columns: b)
            l.end = l.packedVt + Self.packedCount(depth: b, columns: length)
            layout[q] = l
            offset = l.end
        }
        self.layout = layout
        storage = try FallibleAllocation.allocate(Double.self, count: max(1, offset), "the back-transformation's blocks")
        let workers = min(blocks, Threading.workerCount(for: reflectors * n * Self.width, minimumPerWorker: 1 << 20))
        let vtCount = Self.width * max(1, n - 1)
        let vts: UnsafeMutablePointer<Double>
        do { vts = try FallibleAllocation.allocate(Double.self, count: max(1, workers) * vtCount, "the reflector blocks") } catch {
            FallibleAllocation.free(storage)
            throw error
        }
        defer { FallibleAllocation.free(vts) }
        let this = self
        tau.withUnsafeBufferPointer { tau in
            parallelFor(workers: workers) { worker in
                // Round-robin: the blocks shrink with q.
                var q = worker
                while q < blocks {
                    this.build(q, reflectors: a, tau: tau, vt: vts + worker * vtCount)
                    q += workers
                }
            }
        }
    }

    func deallocate() { FallibleAllocation.free(storage) }

    /// The `k × n` operand of a packed GEMM (`n` rounded up to whole panels),
    /// as ``GEMMDriver/packWholeB(into:workers:)`` lays it out.
    static func packedCount(depth: Int, columns: Int) -> Int {
        let nr = Double.gemmNR
        return depth * ((columns + nr - 1) / nr * nr)
    }

    /// Fills block `q`: `Vᵀ` (into the scratch `vt`), `T` column by column
    /// (`T[0..<i, i] = −τ_i · T[0..<i, 0..<i] · (Vᵀ v_i)[0..<i]`), then the packed operands.
    private func build(_ q: Int, reflectors a: UnsafePointer<Double>, tau: UnsafeBufferPointer<Double>,
                       vt: UnsafeMutablePointer<Double>) {
        let k0 = first(q), b = size(q), length = length(q), l = layout[q]
        let t = storage + l.t
        for j in 0 ..< b {
            let row = vt + j * length
            row.update(repeating: 0, count: j)
            row[j] = 1
            (row + j + 1).update(from: a + (k0 + j) * n + k0 + 1 + j + 1, count: length - j - 1)
        }
        t.update(repeating: 0, count: b * b)
        withUnsafeTemporaryAllocation(of: Double.self, capacity: Self.width) { products in
            for i in 0 ..< b {
                let tauI = tau[k0 + i]
                t[i * b + i] = tauI
                guard i > 0, tauI != 0 else { continue }
                for r in 0 ..< i { products[r] = dot(vt + r * length + i, vt + i * length + i, length - i) }
                for r in 0 ..< i {
                    var sum = 0.0
                    for c in r ..< i { sum += t[r * b + c] * products[c] }
                    t[r * b + i] = -tauI * sum
                }
            }
        }
        // The drivers only read their B operands here (the A and C pointers are placeholders).
        let (product, scaled, update) = products(q, rows: 1, z: storage, ldz: length, work: storage, work2: storage,
                                                 vt: UnsafePointer(vt))
        product.packWholeB(into: storage + l.packedV, workers: 1)
        scaled.packWholeB(into: storage + l.packedT, workers: 1)
        update.packWholeB(into: storage + l.packedVt, workers: 1)
    }

    /// The three products that apply block `q` to `rows` rows of `Zᵀ`
    /// (`z`: row `r` at `z + r · ldz`, coordinates from 0): `W = Z[:, k0+1...] V`,
    /// `W2 = W Tᵀ`, `Z[:, k0+1...] −= W2 Vᵀ` (`work`, `work2`: `rows × b`),
    /// with `Vᵀ` at `vt` (read only by the packing, in ``build``).
    private func products(_ q: Int, rows: Int, z: UnsafeMutablePointer<Double>, ldz: Int,
                          work: UnsafeMutablePointer<Double>, work2: UnsafeMutablePointer<Double>,
                          vt: UnsafePointer<Double>)
        -> (GEMMDriver<Double>, GEMMDriver<Double>, GEMMDriver<Double>) {
        let b = size(q), length = length(q), l = layout[q]
        let t = UnsafePointer(storage + l.t)
        var product = GEMMDriver<Double>(transA: false, transB: true, m: rows, n: b, k: length, alpha: 1,
                                         a: UnsafePointer(z), lda: ldz, b: vt, ldb: length, c: work, ldc: b)
        product.overwrite = true
        var scaled = GEMMDriver<Double>(transA: false, transB: true, m: rows, n: b, k: b, alpha: 1,
                                        a: UnsafePointer(work), lda: b, b: t, ldb: b, c: work2, ldc: b)
        scaled.overwrite = true
        let update = GEMMDriver<Double>(transA: false, transB: false, m: rows, n: length, k: b, alpha: -1,
                                        a: UnsafePointer(work2), lda: b, b: vt, ldb: length, c: z, ldc: ldz)
        return (product, scaled, update)
    }

    /// `Z ← Z H_{k0+b-1} ⋯ H_{k0}` on `rows` rows of `Zᵀ` at `zt` (`ldz` apart,
    /// all `n` coordinates) with block `q`'s packed operands.
    /// - Throws: `.outOfMemory` if a GEMM's packing buffer for A is refused.
    func apply(_ q: Int, to zt: UnsafeMutablePointer<Double>, ldz: Int, rows: Int,
               work: UnsafeMutablePointer<Double>, work2: UnsafeMutablePointer<Double>) throws {
        let l = layout[q]
        // With every B operand prepacked, the drivers never read `vt`: the packed `Vᵀ` stands in for it.
        var (product, scaled, update) = products(q, rows: rows, z: zt + first(q) + 1, ldz: ldz,
                                                 work: work, work2: work2, vt: UnsafePointer(storage + l.packedVt))
        product.prepackedB = UnsafePointer(storage + l.packedV)
        scaled.prepackedB = UnsafePointer(storage + l.packedT)
        update.prepackedB = UnsafePointer(storage + l.packedVt)
        try product.runChecked(workers: 1)
        try scaled.runChecked(workers: 1)
        try update.runChecked(workers: 1)
    }
}
