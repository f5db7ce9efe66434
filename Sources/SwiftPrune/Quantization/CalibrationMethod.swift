/// How the clipping range of each quantization group is chosen.
public enum CalibrationMethod: Equatable, Sendable {
    /// The group's minimum and maximum.
    case minmax
    /// Clip at the given percentile (0...100) of the group's `|w|`, NumPy's
    /// default ("linear") percentile definition.
    case percentile(Double)
    /// Search the clipping range `[alpha·lo, alpha·hi]` (alpha in (0.2, 1])
    /// that minimizes the group's reconstruction MSE; alpha = 1 (minmax) wins
    /// unless another candidate is strictly better, so the result is never
    /// worse than minmax.
    case mse
}
