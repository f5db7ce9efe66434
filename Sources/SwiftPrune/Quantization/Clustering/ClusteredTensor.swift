/// A tensor stored as indices into a small codebook of centroids (weight
/// sharing / palettization): `w ≈ centroids[indices]`.
public struct ClusteredTensor: Equatable, Sendable {
    public let shape: [Int]
    /// The codebook, ascending.
    public let centroids: [Float]
    /// One codebook index per element, C order.
    public let indices: [UInt16]

    /// Clusters the values of `weights` with ``KMeans1D`` and assigns each
    /// value to its nearest centroid.
    public init(clustering weights: Tensor<Float>, clusters: Int, initialization: ClusterInitialization = .linear,
                maxIterations: Int = 100, seed: UInt64 = 0) throws {
        let fit = try weights.scalars.withUnsafeBufferPointer {
            try KMeans1D($0, clusters: clusters, initialization: initialization, maxIterations: maxIterations, seed: seed)
        }
        var indices = try [UInt16](fallibleRepeating: 0, count: weights.count)
        try weights.scalars.withUnsafeBufferPointer { x in
            try fit.centroids.withUnsafeBufferPointer { c in
                try indices.withUnsafeMutableBufferPointer { try Codebook.assign(x, centroids: c, into: $0) }
            }
        }
        self.shape = weights.shape
        self.centroids = fit.centroids
        self.indices = indices
    }

    /// `centroids[indices]` with the tensor's shape.
    public func dequantized() throws -> Tensor<Float> {
        try Tensor<Float>.filling(shape: shape) { out in
            try indices.withUnsafeBufferPointer { i in
                try centroids.withUnsafeBufferPointer { try Codebook.lookup(i, centroids: $0, into: out) }
            }
        }
    }
}
