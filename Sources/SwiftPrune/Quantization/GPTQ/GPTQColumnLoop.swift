import SwiftPrunePrefetch

/// The column loop of GPTQ and SparseGPT in float32, the precision of the
/// papers' code: quantize (GPTQ), prune (SparseGPT) or both at once
/// (SparseGPT's joint sparsification and quantization: the kept weights of
/// each column are quantized inside the loop, the pruned ones are 0).
///
/// Columns are processed in blocks (a multiple of the group size). Within a
/// block, rows go in tiles of eight, one `SIMD8<Float>` lane per row: the
/// tile's block of weights is copied transposed into a small scratch that
/// stays in L1 (`block × 8` floats), each column is quantized with vector
/// operations (scale, clamp, round half to even, error), and its error is
/// spread over the block's later columns by rank-1 updates on that scratch
/// (`T[j] -= err · U[i, j]`, one broadcast per column). The errors of the
/// block are kept (transposed, `block × rows`) and the columns after the
/// block receive them at once by one SGEMM (`W[:, i2:] -= Eᵀ · U[i1:i2,
/// i2:]`, the paper's lazy batch update). No allocation inside the loop.
struct GPTQColumnLoop {
    let weights: UnsafePointer<Float>
    let rows: Int, cols: Int
    let hessian: UnsafePointer<Double>
    /// The integer grid; `nil`: no quantization (SparseGPT alone).
    let scheme: QuantizationScheme?
    let options: GPTQOptions
    /// SparseGPT's pattern; `nil`: no pruning (GPTQ alone).
    let pattern: SparseGPTPattern?

    init(weights: UnsafePointer<Float>, rows: Int, cols: Int, hessian: UnsafePointer<Double>,
         scheme: QuantizationScheme?, options: GPTQOptions, pattern: SparseGPTPattern? = nil) {
        self.weights = weights
        self.rows = rows
        self.cols = cols
        self.hessian = hessian
        self.scheme = scheme
        self.options = options
        self.pattern = pattern
    }

    /// The columns per block: `blockSize` rounded to a multiple of the group
    /// size (when quantizing in groups), at most `cols`.
    static func block(options: GPTQOptions, quantizing: Bool, cols: Int) -> Int {
        let groupSize = quantizing ? options.groupSize : nil
        let block = groupSize.map { g in g >= options.blockSize ? g : g * (options.blockSize / g) } ?? options.blockSize
        return Swift.max(1, Swift.min(block, cols))
    }

    /// The caller-owned-output entry of GPTQ and of SparseGPT's joint form,
    /// after their own validation gave `layout`: checks the outputs' sizes
    /// (`values` rows × cols, `scales` and `zeroPoints` one per group) and
    /// the weights for NaN/Inf, gives an empty layer unit scales and zero
    /// zero points, and runs the loop. `method` names the caller in the
    /// size error.
    static func quantize(
        method: String, weights: UnsafeBufferPointer<Float>, rows: Int, cols: Int,
        hessian: UnsafeBufferPointer<Double>, scheme: QuantizationScheme, options: GPTQOptions,
        pattern: SparseGPTPattern?, layout: QuantizationLayout, values: UnsafeMutableBufferPointer<UInt8>,
        scales: UnsafeMutableBufferPointer<Float>, zeroPoints: UnsafeMutableBufferPointer<Int32>
    ) throws {
        guard values.count == rows * cols, scales.count == layout.groupCount, zeroPoints.count == layout.groupCount else {
            throw SwiftPruneError.value("\(method) outputs: \(values.count) values and \(scales.count) scales for " +
                                        "\(rows * cols) weights in \(layout.groupCount) groups")
        }
        for v in weights where !v.isFinite { throw SwiftPruneError.value("w contains NaN or Inf values") }
        guard rows > 0 && cols > 0 else {
            scales.update(repeating: 1)
            zeroPoints.update(repeating: 0)
            return
        }
        try GPTQColumnLoop(weights: weights.baseAddress!, rows: rows, cols: cols, hessian: hessian.baseAddress!,
                           scheme: scheme, options: options, pattern: pattern)
            .run(values: values.baseAddress!, scales: scales.baseAddress!, zeroPoints: zeroPoints.baseAddress!)
    }

    typealias V = SIMD8<Float>
    static let lanes = 8

    /// Runs the loop. With a `scheme`, fills `values` (rows × cols bytes),
    /// `scales` and `zeroPoints` (rows × groups); `dense`, when given,
    /// receives the final (pruned, dequantized) weights, rows × cols.
    func run(values: UnsafeMutablePointer<UInt8>?, scales: UnsafeMutablePointer<Float>?,
             zeroPoints: UnsafeMutablePointer<Int32>?, dense: UnsafeMutablePointer<Float>? = nil) throws {
        let quantizing = scheme != nil
        let scheme = try self.scheme ?? QuantizationScheme(bits: 8, symmetric: true)  // unused without quantizing
        let groupSize = quantizing ? options.groupSize : nil
        let group = groupSize ?? cols
        let groupsPerRow = cols / group
        let block = Self.block(options: options, quantizing: quantizing, cols: cols)
        // Act-order stores scales per original group, so its groups are static.
        let staticGroups = groupSize != nil && (options.staticGroups || options.actOrder)
        let dynamicGroups = groupSize != nil && !staticGroups
        let search = SearchedRange(scheme: scheme, grid: options.mseGrid, maxShrink: options.maxShrink)
        let rows = self.rows, cols = self.cols, h = hessian
        var sparsity = 0.0, keepPerGroup = 0, patternGroup = 0
        switch pattern {
        case .none: break
        case .unstructured(let s)?: sparsity = s
        case .nm(let n, let m)?: keepPerGroup = n; patternGroup = m
        }
        let pruning = pattern != nil, unstructured = pruning && patternGroup == 0
        guard !(pruning && options.actOrder) else { throw SwiftPruneError.value("act_order is not supported with pruning") }
        guard patternGroup == 0 || (block % patternGroup == 0 && cols % patternGroup == 0) else {
            throw SwiftPruneError.value("block_size = \(block) and the \(cols) input columns must be multiples of m = \(patternGroup)")
        }

        // Act-order permutation: decreasing diag H (dead inputs count as 1), the lower index first among ties.
        var order = Array(0 ..< cols)
        if options.actOrder {
            let diagonal = (0 ..< cols).map { h[$0 * cols + $0] == 0 ? 1 : h[$0 * cols + $0] }
            order.sort { diagonal[$0] != diagonal[$1] ? diagonal[$0] > diagonal[$1] : $0 < $1 }
        }
        let deadColumns = (0 ..< cols).filter { h[$0 * cols + $0] == 0 }

        // The working copy: dead inputs zeroed; scales fixed before any update (per row or static groups).
        let w = try FallibleAllocation.allocate(Float.self, count: rows * cols, "the working copy of w")
        defer { FallibleAllocation.free(w) }
        let rowWorkers = Threading.workerCount(for: rows * cols * Swift.max(1, options.mseGrid / 4),
                                               minimumPerWorker: 1 << 18)
        let fixedScales = quantizing && (groupSize == nil || staticGroups)
        let rowScratch = try FallibleAllocation.allocate(Float.self, count: options.actOrder ? rowWorkers * cols : 1,
                                                         "the row scratch")
        defer { FallibleAllocation.free(rowScratch) }
        try order.withUnsafeBufferPointer { ob in
            let order = ob.baseAddress!
            parallelFor(workers: rowWorkers) { worker in
                let temporary = rowScratch + worker * cols
                for r in partitionRange(rows, parts: rowWorkers, index: worker) {
                    let row = w + r * cols
                    row.update(from: weights + r * cols, count: cols)
                    for j in deadColumns { row[j] = 0 }
                    if fixedScales, let scales, let zeroPoints {
                        for g in 0 ..< groupsPerRow {
                            let p = search.parameters(UnsafePointer(row + g * group), group)
                            scales[r * groupsPerRow + g] = p.scale
                            zeroPoints[r * groupsPerRow + g] = p.zeroPoint
                        }
                    }
                    if options.actOrder {
                        for i in 0 ..< cols { temporary[i] = row[order[i]] }
                        row.update(from: temporary, count: cols)
                    }
                }
            }
            let factor = try InverseHessianFactor(hessian: h, n: cols, order: options.actOrder ? order : nil,
                                                  damp: options.damp)
            defer { factor.release() }
            let u = UnsafePointer(factor.u)

            let lanes = Self.lanes
            let tiles = (rows + lanes - 1) / lanes
            let workers = Swift.min(Threading.workerCount(for: rows * block * block, minimumPerWorker: 1 << 18), tiles)
            // Per worker: the tile's block (block × 8) and the negated errors of a sub-block (8 × 8).
            let scratchPerWorker = (block + Self.subBlock) * lanes
            let tileScratch = try FallibleAllocation.allocate(Float.self, count: workers * scratchPerWorker, "the block scratch")
            defer { FallibleAllocation.free(tileScratch) }
            let groupScratch = try FallibleAllocation.allocate(Float.self, count: workers * group, "the group scratch")
            defer { FallibleAllocation.free(groupScratch) }
            let errors = try FallibleAllocation.allocate(Float.self, count: block * rows, "the block errors")
            defer { FallibleAllocation.free(errors) }
            // SparseGPT's keep-mask of the block (rows × block) and, unstructured, its scores.
            let keep = try FallibleAllocation.allocate(Bool.self, count: pruning ? rows * block : 1, "the block mask")
            defer { FallibleAllocation.free(keep) }
            let scores = try FallibleAllocation.allocate(Double.self, count: unstructured ? rows * block : 1, "the block scores")
            defer { FallibleAllocation.free(scores) }
            let pruneTotalBefore: (Int) -> Int = { end in
                Int((sparsity * Double(rows) * Double(end)).rounded(.toNearestOrEven))
            }
            let qmin = scheme.qmin, qmax = scheme.qmax
            let magic = V(repeating: 12_582_912)  // 1.5 · 2^23: adding and subtracting it rounds half to even

            var i1 = 0
            while i1 < cols {
                let i2 = Swift.min(cols, i1 + block), width = i2 - i1
                if unstructured {
                    // Joint choice over the block's rows and columns: the smallest w² / U_ii² are pruned.
                    for r in 0 ..< rows {
                        let row = w + r * cols + i1
                        for c in 0 ..< width {
                            let d = Double(u[(i1 + c) * (cols + 1)]), x = Double(row[c])
                            scores[r * width + c] = (x * x) / (d * d)
                        }
                    }
                    let k = Swift.min(rows * width, Swift.max(0, pruneTotalBefore(i2) - pruneTotalBefore(i1)))
                    try writeMagnitudeMasks(SegmentedBuffer([UnsafeBufferPointer(start: scores, count: rows * width)]),
                                            prune: k, into: [UnsafeMutableBufferPointer(start: keep, count: rows * width)])
                }
                parallelFor(workers: workers) { worker in
                    let t = tileScratch + worker * scratchPerWorker
                    let pendingErrors = t + block * lanes
                    let groupValues = groupScratch + worker * group
                    let myTiles = partitionRange(tiles, parts: workers, index: worker)
                    for tile in myTiles {
                        let r0 = tile * lanes, active = Swift.min(lanes, rows - r0)
                        // The next tile's rows of the block come from memory (the lazy update wrote them
                        // long ago): fetch them while this tile runs (it was latency-bound without).
                        if tile + 1 < myTiles.upperBound {
                            let next = (tile + 1) * lanes
                            for l in 0 ..< Swift.min(lanes, rows - next) {
                                let row = UnsafeRawPointer(w + (next + l) * cols + i1)
                                var offset = 0
                                while offset < width * MemoryLayout<Float>.stride {
                                    swiftprune_prefetch_read(row + offset)
                                    offset += 64
                                }
                            }
                        }
                        // The tile's block, transposed: t[c · 8 + l] = w[r0 + l, i1 + c].
                        if active < lanes { t.update(repeating: 0, count: width * lanes) }
                        for l in 0 ..< active {
                            let row = w + (r0 + l) * cols + i1
                            for c in 0 ..< width { t[c * lanes + l] = row[c] }
                        }
                        var currentGroup = -1
                        var scale = V(repeating: 1), low = V(), high = V()
                        var zero = SIMD8<Int32>()
                        var c0 = 0
                        while c0 < width {
                            // A sub-block of at most 8 columns, cut before a group start (its scales read the
                            // columns after it) and an N:M group start (its choice reads them too), so that
                            // those columns have every earlier column's update when read.
                            var c1 = Swift.min(width, c0 + Self.subBlock)
                            for k in (c0 + 1) ..< Swift.max(c0 + 1, c1)
                            where (dynamicGroups && (i1 + k) % group == 0) || (patternGroup > 0 && k % patternGroup == 0) {
                                c1 = k
                                break
                            }
                            for c in c0 ..< c1 {
                                let i = i1 + c, original = order[i], g = original / group
                                if patternGroup > 0 && c % patternGroup == 0 {
                                    // N:M: the m - n smallest w² / U_ii² of each row's group are pruned, now.
                                    for l in 0 ..< active {
                                        selectGroup(t + c * lanes + l, lanes, u + i * (cols + 1), cols + 1,
                                                    patternGroup, keepPerGroup, keep + (r0 + l) * width + c)
                                    }
                                }
                                if quantizing && dynamicGroups && i % group == 0, let scales, let zeroPoints {
                                    // Scales of the group from the weights updated so far, per lane.
                                    var lo = V(), hi = V()
                                    for k in c ..< c + group {
                                        let x: V = loadVector(UnsafePointer(t + k * lanes))
                                        // (pointwiseMin/Max go lane by lane through a call; these are one instruction.)
                                        lo = lo.replacing(with: x, where: x .< lo)
                                        hi = hi.replacing(with: x, where: x .> hi)
                                    }
                                    for l in 0 ..< active {
                                        let p: (scale: Float, zeroPoint: Int32)
                                        if search.grid > 0 {
                                            for k in 0 ..< group { groupValues[k] = t[(c + k) * lanes + l] }
                                            p = search.parameters(UnsafePointer(groupValues), group)
                                        } else {
                                            p = scheme.parameters(lo: Double(lo[l]), hi: Double(hi[l]), as: Double.self)
                                        }
                                        scales[(r0 + l) * groupsPerRow + g] = p.scale
                                        zeroPoints[(r0 + l) * groupsPerRow + g] = p.zeroPoint
                                    }
                                    currentGroup = -1
                                }
                                if quantizing && g != currentGroup, let scales, let zeroPoints {
                                    currentGroup = g
                                    for l in 0 ..< active {
                                        let slot = (r0 + l) * groupsPerRow + g
                                        let z = zeroPoints[slot]
                                        scale[l] = scales[slot]
                                        zero[l] = z
                                        low[l] = Float(qmin - z)
                                        high[l] = Float(qmax - z)
                                    }
                                }
                                let p = t + c * lanes
                                let v: V = loadVector(UnsafePointer(p))
                                var kept = V(repeating: 1)
                                if pruning {
                                    let k = keep + r0 * width + c
                                    for l in 0 ..< active where !k[l * width] { kept[l] = 0 }
                                }
                                var q = v, rounded = V()
                                if quantizing {
                                    let ratio = v / scale
                                    let below = ratio.replacing(with: high, where: ratio .> high)
                                    let clamped = below.replacing(with: low, where: below .< low)
                                    rounded = ((clamped + magic) - magic) * kept
                                    q = rounded * scale
                                    if let values {
                                        for l in 0 ..< active {
                                            values[(r0 + l) * cols + original] =
                                                UInt8(truncatingIfNeeded: rounded[l].roundedToInt32 &+ zero[l])
                                        }
                                    }
                                } else if pruning {
                                    q = v * kept
                                }
                                let error = (v - q) / V(repeating: u[i * cols + i])
                                if dense != nil { storeVector(q, p) }  // the final value, copied out after the block
                                let e = errors + c * rows + r0
                                if active == lanes { storeVector(error, e) } else { for l in 0 ..< active { e[l] = error[l] } }
                                // Rank-1 update of the sub-block's later columns; the columns after the
                                // sub-block get it below, with the sub-block's other errors.
                                let uRow = u + i * cols + i1
                                let negative = -error
                                storeVector(negative, pendingErrors + (c - c0) * lanes)
                                var j = c + 1
                                while j < c1 {
                                    let x = t + j * lanes
                                    storeVector((loadVector(UnsafePointer(x)) as V).addingProduct(negative, V(repeating: uRow[j])), x)
                                    j += 1
                                }
                            }
                            Self.applyErrors(UnsafePointer(pendingErrors), count: c1 - c0, u: u + (i1 + c0) * cols + i1,
                                             cols: cols, to: t, from: c1, width: width)
                            c0 = c1
                        }
                        if let dense {
                            for l in 0 ..< active {
                                let row = dense + (r0 + l) * cols
                                for c in 0 ..< width { row[order[i1 + c]] = t[c * lanes + l] + 0 }  // +0: no -0.0
                            }
                        }
                    }
                }
                // The columns after the block, all rows at once: W[:, i2:] -= Eᵀ · U[i1:i2, i2:], one SGEMM.
                if i2 < cols {
                    try gemm(transA: true, transB: false, m: rows, n: cols - i2, k: width, alpha: -1,
                             a: UnsafePointer(errors), lda: rows, b: u + i1 * cols + i2, ldb: cols,
                             beta: 1, c: w + i2, ldc: cols)
                }
                i1 = i2
            }
        }
    }
}

extension GPTQColumnLoop {
    /// Columns per sub-block of the in-block updates (see ``applyErrors(_:count:u:cols:to:from:width:)``).
    static let subBlock = 8

    /// `t[j] += Σ_k negativeErrors[k] · u[k · cols + j]` for `from <= j < width`, `k < count`
    /// (`t`: a tile's block, 8 lanes per column; `negativeErrors`: `count` vectors of 8): the rank-1
    /// updates of up to 8 consecutive columns on the columns after them, each `t[j]` loaded and stored
    /// once for all of them instead of once per column. Each lane receives the same fused
    /// multiply-adds in the same order as one update per column, so the results are identical.
    @inline(__always)
    static func applyErrors(_ negativeErrors: UnsafePointer<Float>, count: Int, u: UnsafePointer<Float>, cols: Int,
                            to t: UnsafeMutablePointer<Float>, from: Int, width: Int) {
        guard from < width else { return }
        let lanes = Self.lanes
        if count == 8 {
            let e0: V = loadVector(negativeErrors), e1: V = loadVector(negativeErrors + lanes)
            let e2: V = loadVector(negativeErrors + 2 * lanes), e3: V = loadVector(negativeErrors + 3 * lanes)
            let e4: V = loadVector(negativeErrors + 4 * lanes), e5: V = loadVector(negativeErrors + 5 * lanes)
            let e6: V = loadVector(negativeErrors + 6 * lanes), e7: V = loadVector(negativeErrors + 7 * lanes)
            let u0 = u, u1 = u0 + cols, u2 = u1 + cols, u3 = u2 + cols
            let u4 = u3 + cols, u5 = u4 + cols, u6 = u5 + cols, u7 = u6 + cols
            for j in from ..< width {
                let p = t + j * lanes
                var x: V = loadVector(UnsafePointer(p))
                x = x.addingProduct(e0, V(repeating: u0[j]))
                x = x.addingProduct(e1, V(repeating: u1[j]))
                x = x.addingProduct(e2, V(repeating: u2[j]))
                x = x.addingProduct(e3, V(repeating: u3[j]))
                x = x.addingProduct(e4, V(repeating: u4[j]))
                x = x.addingProduct(e5, V(repeating: u5[j]))
                x = x.addingProduct(e6, V(repeating: u6[j]))
                x = x.addingProduct(e7, V(repeating: u7[j]))
                storeVector(x, p)
            }
        } else {
            for j in from ..< width {
                let p = t + j * lanes
                var x: V = loadVector(UnsafePointer(p))
                for k in 0 ..< count {
                    x = x.addingProduct(loadVector(negativeErrors + k * lanes), V(repeating: u[k * cols + j]))
                }
                storeVector(x, p)
            }
        }
    }
}

/// Keeps the `keep` of `m` entries `x[j · xStride]` with the largest
/// `x² / d[j · dStride]²`, the lower index first among ties; writes `out[j]`.
@inline(__always)
func selectGroup(_ x: UnsafePointer<Float>, _ xStride: Int, _ d: UnsafePointer<Float>, _ dStride: Int,
                 _ m: Int, _ keep: Int, _ out: UnsafeMutablePointer<Bool>) {
    withUnsafeTemporaryAllocation(of: Double.self, capacity: m) { scores in
        for j in 0 ..< m {
            let dj = Double(d[j * dStride]), xj = Double(x[j * xStride])
            scores[j] = xj * xj / (dj * dj)
        }
        for j in 0 ..< m {
            var rank = 0
            for k in 0 ..< j where scores[k] >= scores[j] { rank += 1 }
            for k in (j + 1) ..< m where scores[k] > scores[j] { rank += 1 }
            out[j] = rank < keep
        }
    }
}
