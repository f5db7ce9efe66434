/// GPTQ (Frantar et al., 2022): quantizes a linear layer's weight column by
/// column and spreads each column's rounding error over the columns not yet
/// quantized, weighted by the inverse Hessian of the layer's inputs, so that
/// the layer's output `W X` changes as little as possible.
///
/// Weight layout `(out, in)` = `(rows, cols)`, activations `(samples, in)`.
/// `H = XᵀX / samples`; columns never activated (`H_ii = 0`) are zeroed;
/// `H += damp · mean(diag H) · I`; `U` is the upper Cholesky factor of
/// `H⁻¹` (computed as the reversed lower factor's inverse, no explicit
/// inverse); columns are processed in blocks of 128 (a multiple of the group
/// size) with lazy updates of the columns after the block. With `groupSize`
/// the scales of each group of columns are taken, per row, from the
/// already-updated weights when the group starts; without it, one scale per
/// row from the weights before any update.
public enum GPTQ {
    /// The widest layer handled: three `cols × cols` float64 matrices are live.
    public static let maximumColumns = 32768

    /// Quantizes `weights` (rows × cols) against `activations` (samples × cols).
    /// - Throws: ``SwiftPruneError`` for NaN/Inf, bad sizes, a group size not
    ///   dividing `cols`, negative `damp`, or a Hessian that is not positive
    ///   definite after damping.
    public static func quantize(
        weights: UnsafeBufferPointer<Double>, rows: Int, cols: Int,
        activations: UnsafeBufferPointer<Double>, samples: Int,
        scheme: QuantizationScheme, groupSize: Int?, damp: Double, blockSize: Int = 128
    ) throws -> QuantizedTensor {
        guard rows >= 0, cols >= 0, samples >= 0 else { throw SwiftPruneError.value("negative dimension") }
        let (wCount, o1) = rows.multipliedReportingOverflow(by: cols)
        let (xCount, o2) = samples.multipliedReportingOverflow(by: cols)
        guard !o1, !o2, weights.count == wCount, activations.count == xCount else {
            throw SwiftPruneError.value("w must be (rows, cols) = (\(rows), \(cols)) and x (samples, cols)")
        }
        guard damp >= 0 && damp.isFinite else {
            throw SwiftPruneError.value("damp must be a finite number >= 0, got \(damp)")
        }
        guard samples >= 1 || cols == 0 else {
            throw SwiftPruneError.value("x needs at least one calibration sample")
        }
        let layout = try QuantizationLayout(shape: [rows, cols], axis: 0, groupSize: groupSize)
        guard cols <= maximumColumns else {
            throw SwiftPruneError(.outOfMemory, "gptq needs three \(cols) x \(cols) float64 matrices; at most \(maximumColumns) input columns are supported")
        }
        for v in weights where !v.isFinite { throw SwiftPruneError.value("weights contain NaN or Inf values") }
        for v in activations where !v.isFinite { throw SwiftPruneError.value("x contains NaN or Inf values") }
        let group = groupSize ?? cols
        let block = groupSize.map { g in g >= blockSize ? g : g * (blockSize / g) } ?? blockSize

        var w = Array(weights)
        var h = GPTQLinearAlgebra.gram(activations, samples: samples, features: cols)
        var diagonalSum = 0.0
        for i in 0 ..< cols {
            if h[i * cols + i] == 0 {
                h[i * cols + i] = 1
                for r in 0 ..< rows { w[r * cols + i] = 0 }
            }
            diagonalSum += h[i * cols + i]
        }
        let mean = cols > 0 ? diagonalSum / Double(cols) : 0
        for i in 0 ..< cols { h[i * cols + i] += damp * mean }
        // U = J · inverse(cholesky(J H J)) · J is the upper Cholesky factor of H⁻¹.
        var reversed = try [Double](fallibleRepeating: 0, count: cols * cols)
        for i in 0 ..< cols { for j in 0 ..< cols { reversed[i * cols + j] = h[(cols - 1 - i) * cols + (cols - 1 - j)] } }
        h = []
        try GPTQLinearAlgebra.cholesky(&reversed, n: cols)
        let inverse = GPTQLinearAlgebra.invertLower(reversed, n: cols)
        reversed = []
        var u = try [Double](fallibleRepeating: 0, count: cols * cols)
        for i in 0 ..< cols { for j in i ..< cols { u[i * cols + j] = inverse[(cols - 1 - i) * cols + (cols - 1 - j)] } }

        let groupsPerRow = layout.scaleShape[1]
        var scales = try [Float](fallibleRepeating: 1, count: rows * groupsPerRow)
        var zeroPoints = try [Int32](fallibleRepeating: 0, count: rows * groupsPerRow)
        var storage = try [UInt8](fallibleRepeating: 0, count: rows * cols)
        var errors = try [Double](fallibleRepeating: 0, count: rows * block)
        let workers = Swift.min(Threading.workerCount(for: rows * cols * Swift.max(cols, 1), minimumPerWorker: 1 << 22),
                                Swift.max(rows, 1))
        let qmin = scheme.qmin, qmax = scheme.qmax

        w.withUnsafeMutableBufferPointer { wb in
            u.withUnsafeBufferPointer { ub in
                scales.withUnsafeMutableBufferPointer { sb in
                    zeroPoints.withUnsafeMutableBufferPointer { zb in
                        storage.withUnsafeMutableBufferPointer { qb in
                            errors.withUnsafeMutableBufferPointer { eb in
                                let W = wb.baseAddress!, U = ub.baseAddress!, S = sb.baseAddress!
                                let Z = zb.baseAddress!, Q = qb.baseAddress!, E = eb.baseAddress!
                                parallelFor(workers: workers) { worker in
                                    let myRows = partitionRange(rows, parts: workers, index: worker)
                                    if groupSize == nil {
                                        for r in myRows {
                                            let row = W + r * cols
                                            var lo = 0.0, hi = 0.0
                                            for c in 0 ..< cols { lo = Swift.min(lo, row[c]); hi = Swift.max(hi, row[c]) }
                                            (S[r], Z[r]) = scheme.parameters(lo: lo, hi: hi, as: Double.self)
                                        }
                                    }
                                    var i1 = 0
                                    while i1 < cols {
                                        let i2 = Swift.min(cols, i1 + block)
                                        for r in myRows {
                                            let row = W + r * cols
                                            var scale = 1.0, zero: Int32 = 0
                                            if groupSize == nil { scale = Double(S[r]); zero = Z[r] }
                                            for i in i1 ..< i2 {
                                                if groupSize != nil && i % group == 0 {
                                                    var lo = 0.0, hi = 0.0
                                                    for c in i ..< (i + group) { lo = Swift.min(lo, row[c]); hi = Swift.max(hi, row[c]) }
                                                    let p = scheme.parameters(lo: lo, hi: hi, as: Double.self)
                                                    S[r * groupsPerRow + i / group] = p.scale
                                                    Z[r * groupsPerRow + i / group] = p.zeroPoint
                                                    (scale, zero) = (Double(p.scale), p.zeroPoint)
                                                }
                                                let value = row[i]
                                                let t = Swift.min(Swift.max(value / scale, Double(qmin - zero)), Double(qmax - zero))
                                                let q = t.roundedToInt32 &+ zero
                                                Q[r * cols + i] = UInt8(truncatingIfNeeded: q)
                                                let dequantized = Double(Float(q &- zero) * Float(scale))
                                                let error = (value - dequantized) / U[i * cols + i]
                                                E[r * block + (i - i1)] = error
                                                GPTQLinearAlgebra.axpy(error, U + i * cols + i + 1, row + i + 1, i2 - i - 1)
                                            }
                                        }
                                        GPTQLinearAlgebra.subtractProduct(
                                            w: W, cols: cols, rows: myRows, e: UnsafePointer(E), width: i2 - i1,
                                            u: U, from: i1, to: i2)
                                        i1 = i2
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return try QuantizedTensor(layout: layout, scheme: scheme, storage: storage, scales: scales, zeroPoints: zeroPoints)
    }
}

/// GPTQ on tensors: `weights` of shape `[out, in]`, `activations` of shape
/// `[samples, in]`; see ``GPTQ``. The result has `axis` 0 and the given group size.
/// - Throws: ``SwiftPruneError`` for bad shapes or values (see ``GPTQ/quantize(weights:rows:cols:activations:samples:scheme:groupSize:damp:blockSize:)``).
public func gptq<S: QuantizationScalar>(
    _ weights: Tensor<S>, activations: Tensor<S>, bits: Int = 4, symmetric: Bool = true, groupSize: Int? = 128,
    damp: Double = 0.01
) throws -> QuantizedTensor {
    guard weights.rank == 2, activations.rank == 2, weights.shape[1] == activations.shape[1] else {
        throw SwiftPruneError.value(
            "gptq needs weights [out, in] and activations [samples, in], got \(weights.shape) and \(activations.shape)")
    }
    let w = weights.scalars.map(Double.init), x = activations.scalars.map(Double.init)
    return try w.withUnsafeBufferPointer { wb in
        try x.withUnsafeBufferPointer { xb in
            try GPTQ.quantize(weights: wb, rows: weights.shape[0], cols: weights.shape[1], activations: xb,
                              samples: activations.shape[0], scheme: QuantizationScheme(bits: bits, symmetric: symmetric),
                              groupSize: groupSize, damp: damp)
        }
    }
}
