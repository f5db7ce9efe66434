/// The same target sparsity at every pruning step (TFMOT `ConstantSparsity`).
public struct ConstantSparsity: PruningSchedule, Equatable {
    public let targetSparsity: Double
    public let beginStep: Int
    public let endStep: Int
    public let frequency: Int

    /// - Throws: ``SwiftPruneError`` for a sparsity outside [0, 1], `beginStep < 0`,
    ///   an `endStep` other than -1 below `beginStep`, or `frequency <= 0`.
    public init(sparsity: Double, beginStep: Int = 0, endStep: Int = -1, frequency: Int = 100) throws {
        try validateScheduleSparsity(sparsity, "sparsity")
        try validateScheduleSteps(beginStep: beginStep, endStep: endStep, frequency: frequency, allowEndless: true)
        self.targetSparsity = sparsity
        self.beginStep = beginStep
        self.endStep = endStep
        self.frequency = frequency
    }

    /// The target sparsity, whatever the step.
    public func sparsity(at step: Int) -> Double { targetSparsity }
}
