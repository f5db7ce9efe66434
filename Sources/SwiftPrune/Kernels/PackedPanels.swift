import SwiftPruneShuffle

/// A big float32 matrix packed once into the AVX2 GEMM's A format, for many
/// thin products with it (a randomized SVD's 30-odd `X · Wᵀ` and `Xᵀ · Yᵀ`).
///
/// `op(A)` (`rows × depth`: a row-major matrix, or the transpose of one) is
/// stored in 6-row panels, each panel's `6 × depth` values depth-major
/// (`Float.gemmMicroKernel`'s A layout; rows past the last zero-padded): the
/// blocks ``GEMMDriver`` packs for every product, packed once. Each
/// product then streams A sequentially (one stream per panel, which the
/// hardware prefetchers follow), where GEMM's direct-A kernel
/// (`sgemmMicroKernelDirectA`, used below ``GEMMDriver/directAMaxColumns``
/// result columns so that A is not packed on every call) reads six rows `lda`
/// apart: in a C model of both loops on this VM (2048² times 32 columns,
/// 1 thread, interleaved runs) 21–27 GFMA/s against 15–19.
///
/// ``multiply(_:ldb:n:into:ldc:)`` runs `Float.gemmMicroKernel` on the same
/// tiles, depth blocks (``depthBlock``) and order of sums as
/// ``gemm(transA:transB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:)``'s AVX2 path with
/// `alpha = 1, beta = 0`: bit-identical results.
struct PackedPanels {
    /// Depth of a block of the sums: GEMM's `kc` on the AVX2 path (it decides the rounding).
    static let depthBlock = 256
    static let mr = 6, nr = 16

    let rows: Int, depth: Int
    let storage: UnsafeMutablePointer<Float>
    var panels: Int { (rows + Self.mr - 1) / Self.mr }

    /// Packs `op(a)` (`rows × depth`): `a` itself (`rows × depth`, rows `lda`
    /// apart) or, with `transposed`, the transpose of `a` stored `depth × rows`.
    /// - Throws: `.outOfMemory` when the `6 · ⌈rows / 6⌉ · depth` floats cannot be had.
    init(_ a: UnsafePointer<Float>, lda: Int, transposed: Bool, rows: Int, depth: Int) throws {
        self.rows = rows
        self.depth = depth
        let mr = Self.mr, panels = (rows + mr - 1) / mr
        let (count, overflow) = (mr * panels).multipliedReportingOverflow(by: depth)
        guard !overflow else { throw SwiftPruneError(.outOfMemory, "packed matrix: the size overflows") }
        let storage = try Self.allocate(count)
        self.storage = storage
        let workers = Threading.workerCount(for: count, minimumPerWorker: 1 << 18)
        parallelFor(workers: workers) { worker in
            let mine = partitionRange(panels, parts: workers, index: worker)
            for panel in mine where rows - panel * mr < mr {
                (storage + panel * mr * depth).update(repeating: 0, count: mr * depth)
            }
            if transposed {
                // op(a)[i, p] = a[p · lda + i]: six contiguous values of each stored row
                // per panel. Eight panels (48 columns of a) at a time over all the depth:
                // eight sequential write streams, where a pass over all panels per stored
                // row writes 24 bytes into each of hundreds of pages.
                // A full panel's six values move as one 8-float load and store: the
                // two extra floats land in the panel's next depth slot (p + 1 < depth),
                // which step p + 1 then overwrites, and are read from row p or p + 1
                // of `a` (in bounds). Element-wise, the scalar stores were 3/4 of the
                // packing's samples.
                var group = mine.lowerBound
                while group < mine.upperBound {
                    let end = min(mine.upperBound, group + 8)
                    for p in 0 ..< depth {
                        let src = a + p * lda
                        for panel in group ..< end {
                            let first = panel * mr, valid = min(mr, rows - first)
                            let dst = storage + panel * mr * depth + p * mr
                            if valid == mr && p + 1 < depth {
                                storeVector(loadVector(src + first) as SIMD8<Float>, dst)
                            } else {
                                for r in 0 ..< valid { dst[r] = src[first + r] }
                            }
                        }
                    }
                    group = end
                }
                return
            }
            for panel in mine {
                let first = panel * mr, valid = min(mr, rows - first)
                let out = storage + panel * mr * depth
                var p = 0
                #if arch(x86_64)
                if valid == mr && SWIFTPRUNE_HAS_PACK_6X8 != 0 {
                    // Eight depth steps of the six rows at a time, transposed in registers.
                    while p + 8 <= depth {
                        swiftprune_pack_6x8_f32(a + first * lda + p, lda, out + p * mr)
                        p += 8
                    }
                }
                #endif
                while p < depth {
                    for r in 0 ..< valid { out[p * mr + r] = a[(first + r) * lda + p] }
                    p += 1
                }
            }
        }
    }

    func free() { FallibleAllocation.free(storage) }

    /// `count` floats from ``HugePageScratch``: a fresh 16 MiB copy then takes 8
    /// page faults instead of 4096, and its products 8 TLB entries — the faults
    /// of the two copies were 4% of a 2048² rank-256 call with 4 KiB pages.
    static func allocate(_ count: Int) throws -> UnsafeMutablePointer<Float> {
        try HugePageScratch.allocate(Float.self, count: count, "the packed copy of the matrix")
    }

    /// `c` (`rows × n`, rows `ldc` apart) = `op(A) · bᵀ`, `b` being `n × depth`
    /// (rows `ldb` apart): a thin block of basis vectors stored as rows.
    /// - Throws: `.outOfMemory` when the packed copy of `b` cannot be had.
    func multiply(_ b: UnsafePointer<Float>, ldb: Int, n: Int, into c: UnsafeMutablePointer<Float>, ldc: Int) throws {
        guard rows > 0, n > 0 else { return }
        let mr = Self.mr, nr = Self.nr, panels = panels
        let bPanels = (n + nr - 1) / nr
        guard depth > 0 else {
            for i in 0 ..< rows { (c + i * ldc).update(repeating: 0, count: n) }
            return
        }
        try ScratchPool.withFallible(Float.self, count: depth * bPanels * nr) { packedB in
            // op(B) = bᵀ in 16-column panels per depth block, as GEMM's packB with transB.
            var pc = 0
            while pc < depth {
                let kc = min(Self.depthBlock, depth - pc)
                for j in 0 ..< bPanels {
                    let out = packedB + pc * bPanels * nr + j * kc * nr
                    let width = min(nr, n - j * nr)
                    if width < nr { out.update(repeating: 0, count: nr * kc) }
                    var p = 0
                    #if arch(x86_64)
                    if width == nr && SWIFTPRUNE_HAS_TRANSPOSE_8X8 != 0 {
                        while p + 8 <= kc {
                            swiftprune_transpose_8x8_f32(b + (j * nr) * ldb + pc + p, ldb, out + p * nr, nr)
                            swiftprune_transpose_8x8_f32(b + (j * nr + 8) * ldb + pc + p, ldb, out + p * nr + 8, nr)
                            p += 8
                        }
                    }
                    #endif
                    while p < kc {
                        for jj in 0 ..< width { out[p * nr + jj] = b[(j * nr + jj) * ldb + pc + p] }
                        p += 1
                    }
                }
                pc += kc
            }
            let (work, overflow) = (rows * n).multipliedReportingOverflow(by: depth)
            let workers = overflow ? Threading.threadCount
                : Threading.workerCount(for: work, minimumPerWorker: 1 << 21)
            let packedB = UnsafePointer(packedB)
            parallelFor(workers: workers) { worker in
                // Edge tiles go through a zeroed 6 × 16 scratch tile, added to C (as GEMM's edgeAware).
                withUnsafeTemporaryAllocation(of: Float.self, capacity: mr * nr) { scratchBuffer in
                    let scratch = scratchBuffer.baseAddress!
                    for panel in partitionRange(panels, parts: workers, index: worker) {
                        let first = panel * mr, valid = min(mr, rows - first)
                        for r in 0 ..< valid { (c + (first + r) * ldc).update(repeating: 0, count: n) }
                        // Each depth block of this panel (6 · kc values, in L1) meets every B panel.
                        var pc = 0
                        while pc < depth {
                            let kc = min(Self.depthBlock, depth - pc)
                            let aPanel = UnsafePointer(storage + panel * mr * depth + pc * mr)
                            for j in 0 ..< bPanels {
                                let bPanel = packedB + pc * bPanels * nr + j * kc * nr
                                let width = min(nr, n - j * nr)
                                let tile = c + first * ldc + j * nr
                                if valid == mr && width == nr {
                                    Float.gemmMicroKernel(kc, aPanel, bPanel, 1, tile, ldc)
                                } else {
                                    scratch.update(repeating: 0, count: mr * nr)
                                    Float.gemmMicroKernel(kc, aPanel, bPanel, 1, scratch, nr)
                                    for r in 0 ..< valid {
                                        for jj in 0 ..< width { tile[r * ldc + jj] += scratch[r * nr + jj] }
                                    }
                                }
                            }
                            pc += kc
                        }
                    }
                }
            }
        }
    }
}
