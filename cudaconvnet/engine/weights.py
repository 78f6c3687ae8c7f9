"""A weight matrix or bias vector with its momentum increment, gradient and update rule.

Stands for weights.cuh (cuda-convnet r561) and weights.cu (AlexNet 2012). The update is
the 2012 one:  inc = mom * inc + eps * grad - wc * eps * w;  w += inc,  where grad is the
*negative* gradient of the cost summed over the minibatch and divided by numCases (the
engine propagates -dCost/dx, as 2012 did).
"""
from .lr import make_schedule


class Weights:
    def __init__(self, be, host_w, host_inc, eps, mom=0.0, wc=0.0, wball=0.0, sched=None,
                 superEps=0.0, accumulate=True, src=None, lr_rng=None):
        """host_w / host_inc: the layer dict's arrays, written back by copyToCPU.
        accumulate: whether a second use of a shared matrix in one pass adds to the first
        one's gradient (AlexNet code) or replaces it (cuda-convnet's fc and local layers)."""
        self.be = be
        self.src = src
        self.lrs = make_schedule(sched, eps, lr_rng)
        self.mom = src.mom if src is not None else float(mom)
        self.wc = 0.0 if src is not None else float(wc)
        self.wball = 0.0 if src is not None else float(wball)
        self.superEps = src.superEps if src is not None else float(superEps)
        self.accumulate = accumulate
        self.host_w, self.host_inc = host_w, host_inc
        if src is None:
            self.W = be.array(host_w)
            self.Inc = be.array(host_inc)
            self.Grad = be.zeros(*self.W.shape)
            self._numUpdates = 0
            self._gradAvg = self._grad2Avg = None
        else:
            self.W, self.Inc, self.Grad = src.W, src.Inc, src.Grad

    # -- bookkeeping of the uses in one pass (shared matrices are used more than once) --
    def isOwner(self):
        return self.src is None

    def getNumUpdates(self):
        return self.src.getNumUpdates() if self.src is not None else self._numUpdates

    def incNumUpdates(self):
        if self.src is not None:
            return self.src.incNumUpdates()
        self._numUpdates += 1
        return self._numUpdates - 1

    def getEps(self, progress=0.0):
        return self.lrs.getRate(progress)

    def getBaseRate(self):
        return self.lrs.getBaseRate()

    def gradScaleTarget(self, passType_gc=False):
        """scaleTargets for writing this pass's gradient: add to an earlier use's gradient
        of a shared matrix, or (cuda-convnet fc/local, and every gradient check pass of
        theirs) overwrite it."""
        if self.getNumUpdates() == 0:
            return 0.0
        return 1.0 if self.accumulate else 0.0

    # -- the update -------------------------------------------------------------------
    def update(self, progress=0.0):
        be = self.be
        if self.src is not None or self.getBaseRate() <= 0:
            return
        eps = self.getEps(progress)
        if self.superEps > 0:
            self._super_update(eps)
        else:
            # cuda-convnet's fc/local layers wrote the increment itself on every use of a
            # shared matrix, so a second use dropped the momentum term too.
            mom = self.mom if (self.accumulate or self._numUpdates <= 1) else 0.0
            be.add(self.Inc, self.Grad, mom, eps)
        if self.wc > 0:
            # a rate of its own: with a noisy schedule 2012 drew the decay's noise afresh
            be.add(self.Inc, self.W, 1.0, -self.wc * self.getEps(progress))
        be.add(self.W, self.Inc)
        self._numUpdates = 0

    def _super_update(self, eps):
        """AlexNet code's superEps update: running averages G of g and G2 of g^2;
        inc = 0.9 inc + eps * g / sqrt(G2 - G + superEps) (sic: G, not G^2; and the 0.9
        was hard-coded)."""
        be = self.be
        import numpy as np  # done on the host: a rarely used 2012 experiment
        f32 = np.float32
        g = be.to_host(self.Grad).astype(f32)
        if self._gradAvg is None:
            self._gradAvg = np.zeros_like(g)
            self._grad2Avg = np.zeros_like(g)
        mom = f32(self.mom)  # a float in 2012, and so 1 - mom
        self._gradAvg = mom * self._gradAvg + (f32(1) - mom) * g
        self._grad2Avg = mom * self._grad2Avg + (f32(1) - mom) * g * g
        step = f32(eps) * (g / np.sqrt(self._grad2Avg - self._gradAvg + f32(self.superEps)))
        # the literal 0.9 is a double: superMomUpdate did 0.9 * V + step in double
        inc = 0.9 * be.to_host(self.Inc).astype(np.float64) + step
        be.copy(be.array(inc.astype(f32)), self.Inc)

    # -- host copies ------------------------------------------------------------------
    def copyToCPU(self):
        if self.src is None:
            self.host_w[...] = self.be.to_host(self.W).reshape(self.host_w.shape)
            self.host_inc[...] = self.be.to_host(self.Inc).reshape(self.host_inc.shape)

    def copyToGPU(self):
        if self.src is None:
            self.be.copy(self.be.array(self.host_w).reshape(self.W.shape), self.W)
            self.be.copy(self.be.array(self.host_inc).reshape(self.Inc.shape), self.Inc)
