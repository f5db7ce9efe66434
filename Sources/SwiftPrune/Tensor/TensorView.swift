/// A read-only view of `shape.product` contiguous C-order elements owned by
/// someone else (a ``Tensor``, a NumPy array, a memory-mapped file).
///
/// A view never copies and never outlives the memory it borrows: it is only
/// valid inside the closure or the C call that created it.
public struct TensorView<Scalar> {
    public let shape: [Int]
    public let buffer: UnsafeBufferPointer<Scalar>

    /// Checks that `buffer` holds exactly the elements of `shape`.
    public init(shape: [Int], buffer: UnsafeBufferPointer<Scalar>) throws {
        let count = try Shape.elementCount(shape)
        guard count == buffer.count else {
            throw SwiftPruneError.value("shape \(shape) needs \(count) elements, got \(buffer.count)")
        }
        self.shape = shape
        self.buffer = buffer
    }

    init(shape: [Int], unchecked buffer: UnsafeBufferPointer<Scalar>) {
        self.shape = shape
        self.buffer = buffer
    }

    public var count: Int { buffer.count }
    public var rank: Int { shape.count }
}

/// A writable view of caller-owned C-order memory; see ``TensorView``.
public struct MutableTensorView<Scalar> {
    public let shape: [Int]
    public let buffer: UnsafeMutableBufferPointer<Scalar>

    public init(shape: [Int], buffer: UnsafeMutableBufferPointer<Scalar>) throws {
        let count = try Shape.elementCount(shape)
        guard count == buffer.count else {
            throw SwiftPruneError.value("shape \(shape) needs \(count) elements, got \(buffer.count)")
        }
        self.shape = shape
        self.buffer = buffer
    }

    init(shape: [Int], unchecked buffer: UnsafeMutableBufferPointer<Scalar>) {
        self.shape = shape
        self.buffer = buffer
    }

    public var count: Int { buffer.count }
    public var rank: Int { shape.count }
    public var readOnly: TensorView<Scalar> { TensorView(shape: shape, unchecked: UnsafeBufferPointer(buffer)) }
}
