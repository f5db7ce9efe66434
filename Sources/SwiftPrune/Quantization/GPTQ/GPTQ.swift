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
/// size) with lazy updates of the columns after the block. Everything runs in
/// Float as the paper's code (see `GPTQColumnLoop` and
/// `InverseHessianFactor`); Double weights are rounded to Float first. With `groupSize`
/// the scales of each group of columns are taken, per row, from the
/// already-updated weights when the group starts; without it, one scale per
/// row from the weights before any update.
public enum GPTQ {
    /// The widest layer handled: the Double Hessian and two `cols × cols` Float matrices are live.
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
        _ = try QuantizationLayout(shape: [rows, cols], axis: 0, groupSize: groupSize)
        guard cols <= maximumColumns else {
            throw SwiftPruneError(.outOfMemory, "gptq needs \(cols) x \(cols) Hessian and factor matrices; at most \(maximumColumns) input columns are supported")
        }
        for v in weights where !v.isFinite { throw SwiftPruneError.value("weights contain NaN or Inf values") }
        for v in activations where !v.isFinite { throw SwiftPruneError.value("x contains NaN or Inf values") }
        var h = try [Double](fallibleRepeating: 0, count: cols * cols, "the GPTQ Hessian")
        try h.withUnsafeMutableBufferPointer {
            try accumulateHessian(activations, samples: samples, features: cols, into: $0)
        }
        var options = GPTQOptions()
        options.groupSize = groupSize
        options.damp = damp
        options.blockSize = blockSize
        return try h.withUnsafeMutableBufferPointer { hb in
            try quantize(weights: weights, rows: rows, cols: cols, hessian: hb, scheme: scheme, options: options)
        }
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
