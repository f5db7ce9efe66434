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
/// Everything runs in Float, as the reference code (the Hessian's products
/// in Float summed in Double; the factorization falls back to Double only if
/// Float cannot factor the damped Hessian): the column loop is
/// GPTQ's (tiles of eight rows, rank-1 updates inside a block, one SGEMM for
/// the columns after it).
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
    try validateSparseGPT(weights, pattern: pattern, blockSize: blockSize, damp: damp, output: output)
    guard activations.rank == 2 else {
        throw SwiftPruneError.value("x must be 2-D (samples, in), got shape \(activations.shape)")
    }
    let columns = weights.shape[1], samples = activations.shape[0]
    guard activations.shape[1] == columns else {
        throw SwiftPruneError.value(
            "x has \(activations.shape[1]) features but w has \(columns) input columns (w is (out, in))")
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
    var h = try calibrationGramMatrix(activations.buffer, samples: samples, features: columns)
    try h.withUnsafeMutableBufferPointer {
        try sparseGPT(weights, hessian: $0, pattern: pattern, blockSize: blockSize, damp: damp, into: output)
    }
}

/// SparseGPT from a precomputed Hessian `hessian = XᵀX` (row-major `in × in`,
/// any positive multiple; only read: the buffer is mutable only to keep the
/// signature of earlier releases). See
/// ``sparseGPT(_:activations:pattern:blockSize:damp:into:)``.
/// - Throws: ``SwiftPruneError`` for bad shapes, pattern or options, NaN/Inf,
///   or a Hessian that stays singular (increase `damp`).
@_specialize(where S == Float)
@_specialize(where S == Double)
public func sparseGPT<S: MagnitudeOrdered & SIMDScalar>(
    _ weights: TensorView<S>, hessian: UnsafeMutableBufferPointer<Double>, pattern: SparseGPTPattern,
    blockSize: Int = 128, damp: Double = 0.01, into output: MutableTensorView<S>
) throws {
    try validateSparseGPT(weights, pattern: pattern, blockSize: blockSize, damp: damp, output: output)
    let rows = weights.shape[0], columns = weights.shape[1]
    guard columns <= sparseGPTMaximumColumns else {
        throw SwiftPruneError(.outOfMemory,
            "w has \(columns) input columns; SparseGPT's \(columns) x \(columns) Hessian would not fit in memory")
    }
    guard hessian.count == columns * columns else {
        throw SwiftPruneError.value("the Hessian has \(hessian.count) entries, expected \(columns) x \(columns)")
    }
    var worst: S.MagnitudeKey = 0
    for x in weights.buffer { worst = max(worst, x.magnitudeKey) }
    guard worst < S.infinityKey else { throw SwiftPruneError.value("w contains NaN or Inf values") }
    for v in hessian where !v.isFinite { throw SwiftPruneError.value("the Hessian contains NaN or Inf values") }
    guard weights.count > 0 else { return }

    guard blockSize <= GPTQ.maximumBlockSize else {
        throw SwiftPruneError.value("block_size must be in 1...\(GPTQ.maximumBlockSize), got \(blockSize)")
    }
    let count = rows * columns
    let dense = try FallibleAllocation.allocate(Float.self, count: count, "SparseGPT's output")
    defer { FallibleAllocation.free(dense) }
    var options = GPTQOptions()
    options.blockSize = Swift.min(blockSize, columns)
    options.damp = damp
    func run(_ w: UnsafePointer<Float>) throws {
        try GPTQColumnLoop(weights: w, rows: rows, cols: columns, hessian: UnsafePointer(hessian.baseAddress!),
                           scheme: nil, options: options, pattern: pattern)
            .run(values: nil, scales: nil, zeroPoints: nil, dense: dense)
    }
    if S.self == Float.self {
        try weights.buffer.withMemoryRebound(to: Float.self) { try run($0.baseAddress!) }
    } else {
        let narrow = try FallibleAllocation.allocate(Float.self, count: count, "SparseGPT's float32 copy of w")
        defer { FallibleAllocation.free(narrow) }
        for i in 0 ..< count { narrow[i] = Float(weights.buffer[i]) }
        try run(narrow)
    }
    let out = output.buffer
    for i in 0 ..< count { out[i] = S(dense[i]) }
}

/// SparseGPT's joint sparsification and quantization (Frantar and Alistarh,
/// 2023, section 3.5): inside the column loop, each kept weight is quantized
/// (`scheme`, one scale per row or per `groupSize` columns, the scales of a
/// group taken from the weights updated so far when the group is reached, as
/// GPTQ without act-order) and its rounding error is compensated together
/// with the pruning error; pruned weights are stored as the zero point
/// (value 0). Float weights (`rows × cols`), the Double Hessian `XᵀX` (only
/// read); outputs as ``GPTQ/quantize(weights:rows:cols:hessian:scheme:options:values:scales:zeroPoints:)``.
/// - Throws: as ``sparseGPT(_:hessian:pattern:blockSize:damp:into:)``, and
///   for a group size that does not divide `cols` or outputs of the wrong size.
public func sparseGPTQuantized(
    weights: UnsafeBufferPointer<Float>, rows: Int, cols: Int, hessian: UnsafeBufferPointer<Double>,
    pattern: SparseGPTPattern, scheme: QuantizationScheme, groupSize: Int?, blockSize: Int = 128, damp: Double = 0.01,
    values: UnsafeMutableBufferPointer<UInt8>, scales: UnsafeMutableBufferPointer<Float>,
    zeroPoints: UnsafeMutableBufferPointer<Int32>
) throws {
    var options = GPTQOptions()
    options.groupSize = groupSize
    options.damp = damp
    options.blockSize = blockSize
    let layout = try GPTQ.validate(rows: rows, cols: cols, weightCount: weights.count, hessian: hessian, options: options)
    _ = try sparseGPTPatternParameters(
        pattern, columns: cols, blockSize: GPTQColumnLoop.block(options: options, quantizing: true, cols: Swift.max(cols, 1)))
    try GPTQColumnLoop.quantize(method: "SparseGPT", weights: weights, rows: rows, cols: cols, hessian: hessian,
                                scheme: scheme, options: options, pattern: pattern, layout: layout, values: values,
                                scales: scales, zeroPoints: zeroPoints)
}

/// The checks both SparseGPT entries make on the weights and options: `w`
/// 2-D, the output its size, `blockSize >= 1`, `damp` finite and >= 0, and
/// the pattern (``sparseGPTPatternParameters(_:columns:blockSize:)``).
private func validateSparseGPT<S>(
    _ weights: TensorView<S>, pattern: SparseGPTPattern, blockSize: Int, damp: Double, output: MutableTensorView<S>
) throws {
    guard weights.rank == 2 else { throw SwiftPruneError.value("w must be 2-D (out, in), got shape \(weights.shape)") }
    guard output.count == weights.count else {
        throw SwiftPruneError.value("output has \(output.count) elements, w has \(weights.count)")
    }
    guard blockSize >= 1 else { throw SwiftPruneError.value("block_size must be >= 1, got \(blockSize)") }
    guard damp >= 0 && damp.isFinite else { throw SwiftPruneError.value("damp must be >= 0 and finite, got \(damp)") }
    _ = try sparseGPTPatternParameters(pattern, columns: weights.shape[1], blockSize: blockSize)
}

/// `(sparsity, n, m)` of a validated pattern (`n = m = 0` when unstructured).
func sparseGPTPatternParameters(_ pattern: SparseGPTPattern, columns: Int, blockSize: Int) throws -> (Double, Int, Int) {
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
    return (sparsity, groupKeep, groupSize)
}

/// Largest input dimension SparseGPT accepts (two 32768² Double matrices are 16 GiB).
let sparseGPTMaximumColumns = 32768

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
