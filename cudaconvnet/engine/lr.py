"""Learning-rate schedules: the learning rate as a function of training progress in [0, 1].

Stands for lr.cu of the AlexNet 2012 code (schedW= / schedB= in layer-params.cfg).
cuda-convnet r561 had only the constant rate, which is the 'default' schedule here.
"""
import math
import random


class LearningRateSchedule:
    """'default': the base rate (epsW / epsB) throughout. With noiseStdev > 0, every
    rate is multiplied by (1 + |N(0,1)| * noiseStdev), as 2012 did."""

    def __init__(self, baseRate, noiseStdev=0.0, rng=None):
        self.baseRate = float(baseRate)
        self.noiseStdev = float(noiseStdev)
        self.rng = rng or random.Random(0)

    def getBaseRate(self):
        return self.baseRate

    def getRate(self, progress):
        rate = self._getRate(progress)
        if self.noiseStdev > 0:
            rate *= 1 + abs(self.rng.gauss(0.0, 1.0)) * self.noiseStdev
        return rate

    def _getRate(self, progress):
        return self.baseRate


class LinearLRS(LearningRateSchedule):
    """From the base rate down to base/tgtFactor, linearly in progress."""

    def __init__(self, baseRate, tgtFactor, noiseStdev=0.0, rng=None):
        super().__init__(baseRate, noiseStdev, rng)
        self.finalRate = self.baseRate / tgtFactor

    def _getRate(self, progress):
        return self.baseRate * (1 - progress) + self.finalRate * progress


class ExpLRS(LearningRateSchedule):
    """From the base rate down to base/tgtFactor, geometrically: base^(1 + progress*pow)."""

    def __init__(self, baseRate, tgtFactor, noiseStdev=0.0, rng=None):
        super().__init__(baseRate, noiseStdev, rng)
        finalRate = self.baseRate / tgtFactor
        self.pow = 1.0 if self.baseRate == 0 else math.log(finalRate) / math.log(self.baseRate) - 1

    def _getRate(self, progress):
        return self.baseRate ** (1.0 + progress * self.pow)


class DiscreteExpLRS(LearningRateSchedule):
    """ExpLRS in numSteps equal steps of progress, the last one at base/tgtFactor."""

    def __init__(self, baseRate, tgtFactor, noiseStdev=0.0, numSteps=1, rng=None):
        super().__init__(baseRate, noiseStdev, rng)
        smooth = ExpLRS(baseRate, tgtFactor)
        self.rates = [smooth._getRate(i / (numSteps - 1)) for i in range(numSteps - 1)]
        self.rates.append(self.baseRate / tgtFactor)

    def _rate_index(self, progress):
        for i in range(len(self.rates)):
            if progress <= (i + 1) / len(self.rates):
                return i
        return len(self.rates) - 1

    def _getRate(self, progress):
        return self.rates[self._rate_index(progress)]


class JumpyDiscreteExpLRS(DiscreteExpLRS):
    """DiscreteExpLRS, but in the second half of each step (for progress in (0.2, 0.9))
    the geometric mean of this step's and the previous step's rate."""

    def _getRate(self, progress):
        i = self._rate_index(progress)
        mid = (i + 0.5) / len(self.rates)
        if i > 0 and 0.2 < progress < 0.9 and progress > mid:
            return math.sqrt(self.rates[i] * self.rates[i - 1])
        return self.rates[i]


def make_schedule(sched, baseRate, rng=None):
    """The schedule for a parsed schedW/schedB dict ({'type', 'params'}), or the constant
    rate when `sched` is None (cuda-convnet)."""
    if not sched or sched["type"] == "default":
        return LearningRateSchedule(baseRate, rng=rng)
    p = sched["params"]
    kind = sched["type"]
    if kind == "linear":
        return LinearLRS(baseRate, p["tgtFactor"], p["noiseStdev"], rng)
    if kind == "exp":
        return ExpLRS(baseRate, p["tgtFactor"], p["noiseStdev"], rng)
    if kind == "dexp":
        return DiscreteExpLRS(baseRate, p["tgtFactor"], p["noiseStdev"], p["numSteps"], rng)
    if kind == "jdexp":
        return JumpyDiscreteExpLRS(baseRate, p["tgtFactor"], p["noiseStdev"], p["numSteps"], rng)
    raise ValueError("unknown learning rate schedule '%s'" % kind)
