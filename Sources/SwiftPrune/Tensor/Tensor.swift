/// A dense tensor in contiguous C (row-major) order that owns its storage.
///
/// `Tensor` is the value type of the Swift API. Kernels work on borrowed
/// ``TensorView``s so that callers (the C ABI, NumPy) never pay for a copy.
public struct Tensor<Scalar> {
    /// The extent of each dimension; `[]` is a scalar.
    public let shape: [Int]
    /// The elements in C order; `scalars.count` is the product of `shape`.
    public private(set) var scalars: [Scalar]

    /// Creates a tensor from elements in C order.
    /// - Throws: ``SwiftPruneError`` if `scalars.count` is not the product of `shape`.
    public init(shape: [Int], scalars: [Scalar]) throws {
        let count = try Shape.elementCount(shape)
        guard count == scalars.count else {
            throw SwiftPruneError.value("shape \(shape) needs \(count) elements, got \(scalars.count)")
        }
        self.shape = shape
        self.scalars = scalars
    }

    /// Creates a tensor with every element equal to `value`.
    public init(shape: [Int], repeating value: Scalar) throws {
        self.shape = shape
        self.scalars = Array(repeating: value, count: try Shape.elementCount(shape))
    }

    /// A one-dimensional tensor holding `scalars`.
    public init(_ scalars: [Scalar]) {
        self.shape = [scalars.count]
        self.scalars = scalars
    }

    /// The number of elements.
    public var count: Int { scalars.count }
    /// The number of dimensions.
    public var rank: Int { shape.count }

    /// Calls `body` with a borrowed view of this tensor.
    public func withView<R>(_ body: (TensorView<Scalar>) throws -> R) rethrows -> R {
        try scalars.withUnsafeBufferPointer { try body(TensorView(shape: shape, unchecked: $0)) }
    }

    /// Calls `body` with a mutable borrowed view of this tensor.
    public mutating func withMutableView<R>(_ body: (MutableTensorView<Scalar>) throws -> R) rethrows -> R {
        let shape = self.shape
        return try scalars.withUnsafeMutableBufferPointer {
            try body(MutableTensorView(shape: shape, unchecked: $0))
        }
    }

    /// Creates a tensor of `shape` whose storage is filled by `fill`, which
    /// receives an uninitialized buffer and must initialize every element.
    public static func filling(
        shape: [Int], _ fill: (UnsafeMutableBufferPointer<Scalar>) throws -> Void
    ) throws -> Tensor {
        let count = try Shape.elementCount(shape)
        var thrown: Error?
        let scalars = [Scalar](unsafeUninitializedCapacity: count) { buffer, initialized in
            do { try fill(buffer); initialized = count } catch { thrown = error; initialized = 0 }
        }
        if let thrown { throw thrown }
        return try Tensor(shape: shape, scalars: scalars)
    }
}

extension Tensor: Equatable where Scalar: Equatable {}
