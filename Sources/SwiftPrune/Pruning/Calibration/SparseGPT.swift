/// The sparsity pattern SparseGPT imposes.
public enum SparseGPTPattern: Sendable, Equatable {
    /// Exactly `round(sparsity * out * in)` weights pruned in total.
    case unstructured(sparsity: Double)
    /// `n` of every `m` consecutive weights of each row kept (`1 <= n < m`).
    case nm(n: Int, m: Int)
}

/// SparseGPT (Frantar and Alistarh, 2023, "SparseGPT: Massive Language
/// Models Can Be Accurately Pruned in One-Shot"): prunes a linear layer and
/// updates its remaining weights to compensate, with optimal-brain-surgeon
/// updates from the layer's input Hessian.
///
/// As the reference implementation: `H = XᵀX` (the constant factor `2/N` of
/// the paper cancels out); a column whose diagonal is 0 (a dead input) gets
/// `H_jj = 1` and its weights zeroed; `H += damp · mean(diag H) · I`;
/// `U` = upper Cholesky factor of `H⁻¹`. Columns are processed left to right
/// in blocks of `blockSize`; for each column `i` and row `r`, the pruned
/// weight `w` gives the error `e = w / U_ii`, and the rest of the row is
/// updated by `W[r, i+1...] -= e · U[i, i+1...]`. With `.unstructured`, the
/// weights of each block are chosen jointly over all rows at the start of the
/// block by the smallest `W² / U_ii²` — `round(s · out · end) - round(s · out
/// · start)` of them, so the total is exactly `round(s · out · in)`, the
/// lower row-major position first among ties; with `.nm`, the `m - n`
/// smallest of each group of `m` columns of a row when the group is reached
/// (the lower index kept among ties).
///
/// Cholesky and updates run in Double; the Hessian's products in Float (see
/// ``calibrationGramMatrix(_:samples:features:)``). Rows are independent
/// within a block and are processed in parallel.
/// - Parameters:
///   - weights: `(out, in)`, row-major.
///   - activations: `(samples, in)`.
///   - output: receives the pruned and updated `(out, in)` weights.
/// - Throws: ``SwiftPruneError`` for bad shapes, a bad pattern, `blockSize <
///   1` (or not a multiple of `m`), `damp < 0` or not finite, NaN/Inf, or a
///   Hessian that stays singular (increase `damp`).
@_specialize(where S == Float)
@_specialize(where S == Double)
public func sparseGPT<S: MagnitudeOrdered & SIMDScalar>(
    _ weights: TensorView<S>, activations: TensorView<S>, pattern: SparseGPTPattern,
    blockSize: Int = 128, damp: Double = 0.01, into output: MutableTensorView<S>
) throws {
    guard weights.rank == 2 else { throw SwiftPruneError.value("w must be 2-D (out, in), got shape \(weights.shape)") }
    guard activations.rank == 2 else {
        throw SwiftPruneError.value("x must be 2-D (samples, in), got shape \(activations.shape)")
    }
    guard output.count == weights.count else {
        throw SwiftPruneError.value("output has \(output.count) elements, w has \(weights.count)")
    }
    let rows = weights.shape[0], columns = weights.shape[1], samples = activations.shape[0]
    guard activations.shape[1] == columns else {
        throw SwiftPruneError.value(
            "x has \(activations.shape[1]) features but w has \(columns) input columns (w is (out, in))")
    }
    guard blockSize >= 1 else { throw SwiftPruneError.value("block_size must be >= 1, got \(blockSize)") }
    guard damp >= 0 && damp.isFinite else { throw SwiftPruneError.value("damp must be >= 0 and finite, got \(damp)") }
    var sparsity = 0.0, groupKeep = 0, groupSize = 0
    switch pattern {
    case .unstructured(let s):
        guard s >= 0 && s <= 1 else { throw SwiftPruneError.value("sparsity must be in [0, 1], got \(s)") }
        sparsity = s
    case .nm(let n, let m):
        guard m >= 2 && n >= 1 && n < m else {
            throw SwiftPruneError.value("nm = (\(n), \(m)) must satisfy 1 <= n < m")
        }
        guard columns % m == 0 else {
            throw SwiftPruneError.value("w has \(columns) input columns, not a multiple of m = \(m)")
        }
        guard blockSize % m == 0 else {
            throw SwiftPruneError.value("block_size = \(blockSize) must be a multiple of m = \(m)")
        }
        groupKeep = n; groupSize = m
    }
    var worst: S.MagnitudeKey = 0
    for x in weights.buffer { worst = max(worst, x.magnitudeKey) }
    for x in activations.buffer { worst = max(worst, x.magnitudeKey) }
    guard worst < S.infinityKey else { throw SwiftPruneError.value("w or x contains NaN or Inf values") }
    guard weights.count > 0 else { return }
    // The Hessian and U are two columns × columns Double matrices.
    guard columns <= sparseGPTMaximumColumns else {
        throw SwiftPruneError(.outOfMemory,
            "w has \(columns) input columns; SparseGPT's \(columns) x \(columns) Hessian would not fit in memory")
    }

    // Hessian, dead inputs, damping, inverse Cholesky factor.
    var h = try calibrationGramMatrix(activations.buffer, samples: samples, features: columns)
    var dead = try [Bool](fallibleRepeating: false, count: columns)
    var diagonalSum = 0.0
    for j in 0 ..< columns {
        if h[j * columns + j] == 0 { dead[j] = true; h[j * columns + j] = 1 }
        diagonalSum += h[j * columns + j]
    }
    let dampValue = damp * diagonalSum / Double(columns)
    for j in 0 ..< columns { h[j * columns + j] += dampValue }
    let u = try calibrationInverseCholeskyUpper(h, n: columns)
    h = []

    // Working copy of W in Double.
    var w = try [Double](fallibleRepeating: 0, count: rows * columns)
    for i in 0 ..< rows * columns { w[i] = Double(weights.buffer[i]) }
    for r in 0 ..< rows { for j in 0 ..< columns where dead[j] { w[r * columns + j] = 0 } }

    let pruneTotalBefore: (Int) -> Int = { end in
        Int((sparsity * Double(rows) * Double(end)).rounded(.toNearestOrEven))
    }
    var blockKeep = try [Bool](fallibleRepeating: true, count: rows * min(blockSize, columns))
    var blockScores = try [Double](fallibleRepeating: 0, count: rows * min(blockSize, columns))
    let workers = Threading.workerCount(for: rows * columns * min(blockSize, columns), minimumPerWorker: 1 << 20)
    try w.withUnsafeMutableBufferPointer { wBuffer in
        try u.withUnsafeBufferPointer { uBuffer in
            let wp = wBuffer.baseAddress!, up = uBuffer.baseAddress!
            var start = 0
            while start < columns {
                let end = min(columns, start + blockSize), width = end - start
                if groupSize == 0 {
                    // Joint choice over the block: smallest W² / U_ii².
                    for r in 0 ..< rows {
                        for c in 0 ..< width {
                            let d = up[(start + c) * columns + start + c]
                            let x = wp[r * columns + start + c]
                            blockScores[r * width + c] = (x * x) / (d * d)
                        }
                    }
                    let k = min(rows * width, max(0, pruneTotalBefore(end) - pruneTotalBefore(start)))
                    try blockScores.withUnsafeBufferPointer { scores in
                        try blockKeep.withUnsafeMutableBufferPointer { keep in
                            try writeMagnitudeMasks(
                                SegmentedBuffer([UnsafeBufferPointer(rebasing: scores[0 ..< rows * width])]),
                                prune: k, into: [UnsafeMutableBufferPointer(rebasing: keep[0 ..< rows * width])])
                        }
                    }
                }
                blockKeep.withUnsafeMutableBufferPointer { keepBuffer in
                    let keep = keepBuffer.baseAddress!
                    parallelFor(workers: workers) { worker in
                        let mine = partitionRange(rows, parts: workers, index: worker)
                        // Tiles of rows share each row of U while it is in cache.
                        var tileStart = mine.lowerBound
                        while tileStart < mine.upperBound {
                            let tileEnd = min(mine.upperBound, tileStart + sparseGPTRowTile)
                            for c in 0 ..< width {
                                let i = start + c
                                let uRow = up + i * columns
                                for r in tileStart ..< tileEnd {
                                    let row = wp + r * columns
                                    let rowKeep = keep + r * width
                                    if groupSize > 0 && c % groupSize == 0 {
                                        selectGroup(row + i, uRow + i, columns + 1, groupSize, groupKeep, rowKeep + c)
                                    }
                                    guard !rowKeep[c] else { continue }
                                    let error = row[i] / uRow[i]
                                    row[i] = 0
                                    if error != 0 { calibrationAxpy(-error, uRow + i + 1, row + i + 1, columns - i - 1) }
                                }
                            }
                            tileStart = tileEnd
                        }
                    }
                }
                start = end
            }
        }
    }
    let out = output.buffer
    for i in 0 ..< rows * columns { out[i] = S(w[i]) }
}

/// Largest input dimension SparseGPT accepts (two 32768² Double matrices are 16 GiB).
let sparseGPTMaximumColumns = 32768

/// Rows processed together in SparseGPT's column loop, so that each row of
/// `U` is read from memory once per tile rather than once per row.
let sparseGPTRowTile = 16

/// Keeps the `keep` of `m` entries `x[j]` (stride 1) with the largest
/// `x[j]² / d[j·dStride]²`, the lower index first among ties.
@inline(__always)
func selectGroup(_ x: UnsafeMutablePointer<Double>, _ d: UnsafePointer<Double>, _ dStride: Int,
                 _ m: Int, _ keep: Int, _ out: UnsafeMutablePointer<Bool>) {
    withUnsafeTemporaryAllocation(of: Double.self, capacity: m) { scores in
        for j in 0 ..< m { let dj = d[j * dStride]; scores[j] = x[j] * x[j] / (dj * dj) }
        for j in 0 ..< m {
            var rank = 0
            for k in 0 ..< j where scores[k] >= scores[j] { rank += 1 }
            for k in (j + 1) ..< m where scores[k] > scores[j] { rank += 1 }
            out[j] = rank < keep
        }
    }
}

/// `y += alpha · x` over `count` contiguous Doubles.
@inline(__always)
func calibrationAxpy(_ alpha: Double, _ x: UnsafePointer<Double>, _ y: UnsafeMutablePointer<Double>, _ count: Int) {
    typealias V = SIMD4<Double>
    let a = V(repeating: alpha)
    let rx = UnsafeRawPointer(x), ry = UnsafeMutableRawPointer(y)
    var i = 0
    while i + 8 <= count {
        let o = i * 8
        var y0 = ry.loadUnaligned(fromByteOffset: o, as: V.self)
        var y1 = ry.loadUnaligned(fromByteOffset: o + 32, as: V.self)
        y0.addProduct(a, rx.loadUnaligned(fromByteOffset: o, as: V.self))
        y1.addProduct(a, rx.loadUnaligned(fromByteOffset: o + 32, as: V.self))
        ry.storeBytes(of: y0, toByteOffset: o, as: V.self)
        ry.storeBytes(of: y1, toByteOffset: o + 32, as: V.self)
        i += 8
    }
    while i < count { y[i] += alpha * x[i]; i += 1 }
}

/// The SparseGPT-pruned weights; see ``sparseGPT(_:activations:pattern:blockSize:damp:into:)``.
public func sparseGPT<S: MagnitudeOrdered & SIMDScalar>(
    _ weights: Tensor<S>, activations: Tensor<S>, pattern: SparseGPTPattern,
    blockSize: Int = 128, damp: Double = 0.01
) throws -> Tensor<S> {
    var output = try Tensor<S>(shape: weights.shape, repeating: 0)
    try weights.withView { w in
        try activations.withView { x in
            try output.withMutableView {
                try sparseGPT(w, activations: x, pattern: pattern, blockSize: blockSize, damp: damp, into: $0)
            }
        }
    }
    return output
}
