import Testing
@testable import SwiftPrune

@Suite struct PruningScheduleTests {
    @Test func polynomialDecayFollowsTFMOT() throws {
        let schedule = try PolynomialDecay(initialSparsity: 0.1, finalSparsity: 0.9, beginStep: 100, endStep: 1100,
                                           power: 3, frequency: 50)
        #expect(abs(schedule.sparsity(at: 100) - 0.1) < 1e-12)
        #expect(abs(schedule.sparsity(at: 600) - (0.9 - 0.8 * 0.125)) < 1e-12)
        #expect(abs(schedule.sparsity(at: 5000) - 0.9) < 1e-12)
        #expect(abs(schedule.sparsity(at: 0) - 0.1) < 1e-12)
        #expect(schedule.shouldPrune(at: 1100) && !schedule.shouldPrune(at: 1150) && !schedule.shouldPrune(at: 50))
        #expect(!schedule.shouldPrune(at: 125) && schedule.shouldPrune(at: 150))
        let fractional = try PolynomialDecay(initialSparsity: 0, finalSparsity: 1, beginStep: 0, endStep: 2, power: 2.5)
        #expect(abs(fractional.sparsity(at: 1) - (1 - 0.17677669529663687)) < 1e-12)
    }

    @Test func constantSparsityAndValidation() throws {
        let schedule = try ConstantSparsity(sparsity: 0.5, beginStep: 0, endStep: 20, frequency: 10)
        #expect((0 ..< 40).filter { schedule.shouldPrune(at: $0) } == [0, 10, 20])
        #expect(try ConstantSparsity(sparsity: 0.5).shouldPrune(at: 1_000_000))
        #expect(throws: SwiftPruneError.self) { try ConstantSparsity(sparsity: 1.5) }
        #expect(throws: SwiftPruneError.self) { try ConstantSparsity(sparsity: 0.5, frequency: 0) }
        #expect(throws: SwiftPruneError.self) { try ConstantSparsity(sparsity: 0.5, beginStep: 5, endStep: 2) }
        #expect(throws: SwiftPruneError.self) {
            try PolynomialDecay(initialSparsity: 0, finalSparsity: 0.5, beginStep: 0, endStep: -1)
        }
    }

    @Test func logAndExpWithoutFoundation() {
        for x in [1e-300, 0.001, 0.5, 1, 2, 10, 1e300] {
            #expect(abs(scheduleExp(scheduleLog(x)) / x - 1) < 1e-12)
        }
        #expect(abs(scheduleDecay(0.5, 0.5) - 0.7071067811865476) < 1e-14)
        #expect(scheduleDecay(0, 3) == 0 && scheduleDecay(0.25, 0) == 1)
    }

    @Test func gradualPrunerOnlyGrowsAndHitsTheTarget() throws {
        let schedule = try PolynomialDecay(initialSparsity: 0.2, finalSparsity: 0.8, beginStep: 0, endStep: 30,
                                           power: 1, frequency: 10)
        var pruner = try GradualPruner(shapes: [[4, 5], [10]], schedule: schedule, method: .globalMagnitude)
        var generator = Xoshiro256StarStar(seed: 5)
        func random() -> Float { Float(generator.uniform(below: 1 << 20)) / Float(1 << 19) - 1 }
        var previous = pruner.masks
        for step in 0 ... 40 {
            let weights = [try Tensor<Float>(shape: [4, 5], scalars: (0 ..< 20).map { _ in random() }),
                           Tensor<Float>((0 ..< 10).map { _ in random() })]
            let masks = try pruner.step(step, weights: weights)
            for (before, after) in zip(previous, masks) {
                #expect(!zip(before.scalars, after.scalars).contains { !$0 && $1 })
            }
            previous = masks
        }
        let pruned = previous.reduce(0) { $0 + $1.scalars.filter { !$0 }.count }
        #expect(pruned == 24)  // round(0.8 * 30)
        #expect(pruner.lastUpdateStep == 30)
        var perTensor = try GradualPruner(shapes: [[6]], schedule: try ConstantSparsity(sparsity: 0.5, frequency: 1))
        let masks = try perTensor.step(0, weights: [Tensor<Double>([5, 1, 4, 2, 3, 6])])
        #expect(masks[0].scalars == [true, false, true, false, false, true])
        #expect(throws: SwiftPruneError.self) { try perTensor.step(1, weights: [Tensor<Double>([1, 2])]) }
        #expect(throws: SwiftPruneError.self) { try perTensor.step(1, weights: [Tensor<Double>([1, 2, .nan, 4, 5, 6])]) }
    }
}

@Suite struct ChannelPruningTests {
    @Test func removesDeadUnitsAndTheNextLayersInputs() throws {
        // Keras Dense chain 2 -> 4 -> 1; units 1 and 3 are dead (zero columns).
        let k1 = try Tensor<Float>(shape: [2, 4], scalars: [1, 0, 2, 0, 3, 0, 4, 0])
        let b1 = Tensor<Float>([0.5, 0, -0.5, 0])
        let k2 = try Tensor<Float>(shape: [4, 1], scalars: [1, 2, 3, 4])
        let layers = [ChannelPruningLayer(kernel: k1, bias: b1), ChannelPruningLayer(kernel: k2)]
        let small = try pruneChannels(layers, amount: 0.5, layout: .keras)
        #expect(small[0].kept == [0, 2])
        #expect(small[0].kernel.shape == [2, 2] && small[0].kernel.scalars == [1, 2, 3, 4])
        #expect(small[0].bias?.scalars == [0.5, -0.5])
        #expect(small[1].kernel.shape == [2, 1] && small[1].kernel.scalars == [1, 3])
        #expect(small[1].kept == [0])
    }

    @Test func torchLayoutAndErrors() throws {
        let conv = try Tensor<Double>(shape: [3, 1, 1, 1], scalars: [0, 5, 1])
        let linear = try Tensor<Double>(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
        let small = try pruneChannels([ChannelPruningLayer(kernel: conv, batchNorm: [Tensor([1, 2, 3])]),
                                       ChannelPruningLayer(kernel: linear)], amount: 0.34, layout: .torch)
        #expect(small[0].kernel.scalars == [5, 1] && small[0].batchNorm[0].scalars == [2, 3])
        #expect(small[1].kernel.shape == [2, 2] && small[1].kernel.scalars == [2, 3, 5, 6])
        #expect(throws: SwiftPruneError.self) {
            try pruneChannels([ChannelPruningLayer(kernel: conv), ChannelPruningLayer(kernel: conv)], amount: 0.5, layout: .torch)
        }
        #expect(throws: SwiftPruneError.self) {
            try pruneChannels([ChannelPruningLayer(kernel: conv, bias: Tensor([1, 2]))], amount: 0.5, layout: .torch)
        }
    }
}
