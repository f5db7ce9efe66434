/// A C-order tensor seen along one axis as `(outer, length, inner)`: element
/// `(o, l, i)` lives at flat index `(o * length + l) * inner + i`. Every
/// axis-wise pruning kernel (N:M groups, slice norms) walks this view.
struct AxisSplit {
    let outer: Int
    let length: Int
    let inner: Int
    /// The axis after resolving a negative value.
    let axis: Int

    /// Splits `shape` around `axis` (negative counts from the end).
    /// - Throws: ``SwiftPruneError`` for a scalar shape, an axis out of range
    ///   or a size that overflows.
    init(shape: [Int], axis: Int) throws {
        guard !shape.isEmpty else {
            throw SwiftPruneError.value("w must have at least one dimension, got a scalar")
        }
        let resolved = try Shape.normalizedAxis(axis, rank: shape.count)
        self.axis = resolved
        self.length = shape[resolved]
        self.outer = try Shape.elementCount(Array(shape[..<resolved]))
        self.inner = try Shape.elementCount(Array(shape[(resolved + 1)...]))
        _ = try Shape.elementCount(shape)
    }
}

/// A `Tensor<Bool>` of `shape`, all `true`, handed to `fill` as a mutable view.
func pruningMaskTensor(shape: [Int], _ fill: (MutableTensorView<Bool>) throws -> Void) throws -> Tensor<Bool> {
    var mask = try Tensor<Bool>(shape: shape, repeating: true)
    try mask.withMutableView { try fill($0) }
    return mask
}

/// Checks that a mask view matches a weight view element for element.
func checkMaskMatches<S>(_ mask: MutableTensorView<Bool>, _ weights: TensorView<S>) throws {
    guard mask.count == weights.count else {
        throw SwiftPruneError.value("mask has \(mask.count) elements, weights have \(weights.count)")
    }
}
