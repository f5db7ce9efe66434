/// How a layer's kernel orders its channel axes.
public enum ChannelLayout: Sendable {
    /// Keras: Dense `(in, out)`, Conv `(..., in, out)`: outputs last, inputs second to last.
    case keras
    /// PyTorch: Linear `(out, in)`, Conv `(out, in, ...)`: outputs first, inputs second.
    case torch

    var outputAxis: Int { self == .keras ? -1 : 0 }
    var inputAxis: Int { self == .keras ? -2 : 1 }
}

/// One Dense/Conv layer of a chain for ``pruneChannels(_:amount:layout:norm:)``.
public struct ChannelPruningLayer<Scalar> {
    /// The kernel, in the layout given to ``pruneChannels(_:amount:layout:norm:)``.
    public var kernel: Tensor<Scalar>
    /// The bias, `(out,)`, if any.
    public var bias: Tensor<Scalar>?
    /// Per-channel vectors of a following BatchNorm (gamma, beta, mean, variance…), each `(out,)`.
    public var batchNorm: [Tensor<Scalar>]
    /// After pruning: the indices of the output channels kept.
    public internal(set) var kept: [Int]

    public init(kernel: Tensor<Scalar>, bias: Tensor<Scalar>? = nil, batchNorm: [Tensor<Scalar>] = []) {
        self.kernel = kernel
        self.bias = bias
        self.batchNorm = batchNorm
        self.kept = []
    }
}

/// Physically removes output channels along a chain of layers.
///
/// For every layer but the last, the `round(amount * out)` output channels
/// whose kernel slices have the smallest `norm` are removed (the lower index
/// first among ties, see ``structuredSliceMask(_:amount:axis:norm:into:)``),
/// with their bias and BatchNorm entries and the matching input channels of
/// the next kernel. Layers are processed first to last, so a layer is scored
/// after its inputs were reduced. The last layer keeps its outputs.
/// - Throws: ``SwiftPruneError`` for kernels of rank < 2, channel counts that
///   do not chain, vectors of the wrong length, amount outside [0, 1], NaN/Inf.
public func pruneChannels<S: MagnitudeOrdered & SIMDScalar>(
    _ layers: [ChannelPruningLayer<S>], amount: Double, layout: ChannelLayout = .keras, norm: SliceNorm = .l2
) throws -> [ChannelPruningLayer<S>] {
    var result = layers
    for (index, layer) in layers.enumerated() {
        guard layer.kernel.rank >= 2 else {
            throw SwiftPruneError.value("layers[\(index)].kernel must have at least 2 dimensions, got \(layer.kernel.shape)")
        }
        if index > 0 {
            let inputs = layer.kernel.shape[try Shape.normalizedAxis(layout.inputAxis, rank: layer.kernel.rank)]
            let previous = layers[index - 1].kernel
            let outputs = previous.shape[try Shape.normalizedAxis(layout.outputAxis, rank: previous.rank)]
            guard inputs == outputs else {
                throw SwiftPruneError.value(
                    "layers[\(index)].kernel has \(inputs) input channels but layers[\(index - 1)] has \(outputs) outputs")
            }
        }
    }
    for index in result.indices {
        let kernel = result[index].kernel
        let outAxis = try Shape.normalizedAxis(layout.outputAxis, rank: kernel.rank)
        let channels = kernel.shape[outAxis]
        for vector in [result[index].bias].compactMap({ $0 }) + result[index].batchNorm where vector.shape != [channels] {
            throw SwiftPruneError.value("layers[\(index)]: a bias/BatchNorm vector has shape \(vector.shape), expected [\(channels)]")
        }
        var kept = Array(0 ..< channels)
        if index < result.count - 1 {
            var keep = try [Bool](fallibleRepeating: true, count: channels)
            try kernel.withView { view in
                try keep.withUnsafeMutableBufferPointer {
                    try structuredSliceMask(view, amount: amount, axis: outAxis, norm: norm, into: $0)
                }
            }
            kept = keep.indices.filter { keep[$0] }
            let next = result[index + 1].kernel
            result[index + 1].kernel = try next.keeping(kept, along: layout.inputAxis)
        } else {
            try kernel.withView { try checkFinite($0) }
        }
        result[index].kernel = try kernel.keeping(kept, along: outAxis)
        result[index].bias = try result[index].bias?.keeping(kept, along: 0)
        result[index].batchNorm = try result[index].batchNorm.map { try $0.keeping(kept, along: 0) }
        result[index].kept = kept
    }
    return result
}

extension Tensor {
    /// The tensor with only the slices `indices` (in that order) along `axis`.
    /// - Throws: ``SwiftPruneError`` for an axis or index out of range.
    public func keeping(_ indices: [Int], along axis: Int) throws -> Tensor {
        let split = try AxisSplit(shape: shape, axis: axis)
        for index in indices where index < 0 || index >= split.length {
            throw SwiftPruneError.value("index \(index) is out of range for an axis of length \(split.length)")
        }
        var newShape = shape
        newShape[split.axis] = indices.count
        return try Tensor.filling(shape: newShape) { out in
            guard out.count > 0 else { return }
            scalars.withUnsafeBufferPointer { source in
                let base = source.baseAddress!, target = out.baseAddress!
                var write = 0
                for o in 0 ..< split.outer {
                    for l in indices {
                        (target + write).initialize(from: base + (o * split.length + l) * split.inner, count: split.inner)
                        write += split.inner
                    }
                }
            }
        }
    }
}
