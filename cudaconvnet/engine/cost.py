"""The costs of a batch: per cost layer, the sums of its outputs over the cases seen.

Stands for cost.cu. For cost.logreg the values are the summed -log p(label) and the number
of errors (and, in the AlexNet code, the top-k errors); the training loop divides them by
the number of cases when it prints them.
"""


class Cost:
    def __init__(self, numCases, costs=None, coeffs=None):
        self.numCases = numCases
        self.costs = {k: list(v) for k, v in (costs or {}).items()}
        self.coeffs = dict(coeffs or {})

    def __iadd__(self, other):
        for name, values in other.costs.items():
            mine = self.costs.setdefault(name, [])
            self.coeffs.setdefault(name, other.coeffs.get(name, 1.0))
            for i, v in enumerate(values):
                if i < len(mine):
                    mine[i] += v
                else:
                    mine.append(v)
        self.numCases += other.numCases
        return self

    def getValue(self):
        """The objective: sum over cost layers (in name order, as std::map kept them) of
        coeff * first value."""
        return sum(self.coeffs[name] * self.costs[name][0] for name in sorted(self.costs) if self.costs[name])

    def as_2012(self):
        """(dict name -> [sums], numCases): what the 2012 C++ module returned to Python."""
        return ({name: list(self.costs[name]) for name in sorted(self.costs)}, self.numCases)
