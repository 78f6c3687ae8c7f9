/*
 * nvmatrix_operators.cuh: the element-wise functors of the NVMatrix kernels and of the
 * neurons (2012: include/nvmatrix/nvmatrix_operators.cuh and include/neuron.cuh).
 *
 * What changed from 2012, and why:
 *   - 2012 nested its functors in classes (NVMatrixOps::Exp, NVMatrixBinaryOps::Add,
 *     NVMatrixAggs::Sum, ReluNeuron::ReluOperator). The loader asks for a template
 *     instance by class name and finds it in the PTX by its mangled name, which it can
 *     only build for plain (not nested, not templated) class names, so here the nesting
 *     becomes part of the name: NVMatrixOps_Exp, NVMatrixBinaryOps_Add, NVMatrixAggs_Sum.
 *     2012's AddGradientBinaryOperator<ReluGradientOperator> becomes
 *     AddGradientBinaryOperator_ReluGradientOperator (made by a macro below).
 *   - 2012 built a functor on the host and passed it to the kernel by value. PyCUDA passes
 *     plain scalars, so every functor here is built in the kernel from two floats (p0, p1),
 *     the scalars its 2012 constructor took (unused ones are ignored). The host side
 *     (cudaconvnet/backends/cuda/nvmatrix.py) names the functor and its p0, p1.
 *   - The intrinsics are the 2012 ones (__expf, __logf, __fdividef, __powf): the functors
 *     compute what the 2012 kernels computed, to their precision.
 */
#ifndef CUDACONVNET_NVMATRIX_OPERATORS_CUH
#define CUDACONVNET_NVMATRIX_OPERATORS_CUH

/* A functor with no scalars; FUNCTOR_WITH(x, y) one with two named ones. */
#define FUNCTOR_NO_SCALARS(Name) \
    __device__ Name(const float p0 = 0.0f, const float p1 = 0.0f) {}

/* ===================================================================================== *
 * Unary operators (NVMatrixOps): dest = op(a)                                           *
 * ===================================================================================== */
class NVMatrixOps_Exp {
public:
    FUNCTOR_NO_SCALARS(NVMatrixOps_Exp)
    __device__ inline float operator()(const float a) const { return __expf(a); }
};

class NVMatrixOps_Logistic {
public:
    FUNCTOR_NO_SCALARS(NVMatrixOps_Logistic)
    __device__ inline float operator()(const float a) const {
        return __fdividef(1.0f, 1.0f + __expf(-a));
    }
};

class NVMatrixOps_Log {
public:
    FUNCTOR_NO_SCALARS(NVMatrixOps_Log)
    __device__ inline float operator()(const float a) const { return __logf(a); }
};

class NVMatrixOps_Square {
public:
    FUNCTOR_NO_SCALARS(NVMatrixOps_Square)
    __device__ inline float operator()(const float a) const { return a * a; }
};

class NVMatrixOps_Sqrt {
public:
    FUNCTOR_NO_SCALARS(NVMatrixOps_Sqrt)
    __device__ inline float operator()(const float a) const { return sqrtf(a); }
};

class NVMatrixOps_Reciprocal {
public:
    FUNCTOR_NO_SCALARS(NVMatrixOps_Reciprocal)
    __device__ inline float operator()(const float a) const { return 1.0f / a; }
};

class NVMatrixOps_Abs {
public:
    FUNCTOR_NO_SCALARS(NVMatrixOps_Abs)
    __device__ inline float operator()(const float a) const { return a > 0 ? a : -a; }
};

class NVMatrixOps_Sign {
public:
    FUNCTOR_NO_SCALARS(NVMatrixOps_Sign)
    __device__ inline float operator()(const float a) const { return (a > 0) - (a < 0); }
};

class NVMatrixOps_Identity {
public:
    FUNCTOR_NO_SCALARS(NVMatrixOps_Identity)
    __device__ inline float operator()(const float a) const { return a; }
};

class NVMatrixOps_Zero {
public:
    FUNCTOR_NO_SCALARS(NVMatrixOps_Zero)
    __device__ inline float operator()(const float a) const { return 0.0f; }
};

class NVMatrixOps_One {
public:
    FUNCTOR_NO_SCALARS(NVMatrixOps_One)
    __device__ inline float operator()(const float a) const { return 1.0f; }
};

/* p0 = the scalar: 1 where a < scalar (the dropout mask is made with this) */
class NVMatrixOps_SmallerThanScalar {
    float scalar;
public:
    __device__ NVMatrixOps_SmallerThanScalar(const float p0, const float p1 = 0.0f) : scalar(p0) {}
    __device__ inline float operator()(const float a) const { return a < scalar; }
};

/* p0 = the scalar */
class NVMatrixOps_BiggerThanScalar {
    float scalar;
public:
    __device__ NVMatrixOps_BiggerThanScalar(const float p0, const float p1 = 0.0f) : scalar(p0) {}
    __device__ inline float operator()(const float a) const { return a > scalar; }
};

/* p0 = the scalar */
class NVMatrixOps_AddScalar {
    float scalar;
public:
    __device__ NVMatrixOps_AddScalar(const float p0, const float p1 = 0.0f) : scalar(p0) {}
    __device__ inline float operator()(const float a) const { return a + scalar; }
};

/* p0 = weight, p1 = scalar: weight * a + scalar */
class NVMatrixOps_WeightedAddScalar {
    float weight, scalar;
public:
    __device__ NVMatrixOps_WeightedAddScalar(const float p0, const float p1) : weight(p0), scalar(p1) {}
    __device__ inline float operator()(const float a) const { return weight * a + scalar; }
};

/* p0 = the scalar */
class NVMatrixOps_MultByScalar {
    float scalar;
public:
    __device__ NVMatrixOps_MultByScalar(const float p0, const float p1 = 0.0f) : scalar(p0) {}
    __device__ inline float operator()(const float a) const { return a * scalar; }
};

/* p0 = the exponent */
class NVMatrixOps_Pow {
    float p;
public:
    __device__ NVMatrixOps_Pow(const float p0, const float p1 = 0.0f) : p(p0) {}
    __device__ inline float operator()(const float a) const { return __powf(a, p); }
};

/* 2012's InRange<false>: p0 <= a <= p1 */
class NVMatrixOps_InRangeInc {
    float lower, upper;
public:
    __device__ NVMatrixOps_InRangeInc(const float p0, const float p1) : lower(p0), upper(p1) {}
    __device__ inline float operator()(const float a) const { return a >= lower && a <= upper; }
};

/* 2012's InRange<true>: p0 < a < p1 */
class NVMatrixOps_InRangeExc {
    float lower, upper;
public:
    __device__ NVMatrixOps_InRangeExc(const float p0, const float p1) : lower(p0), upper(p1) {}
    __device__ inline float operator()(const float a) const { return a > lower && a < upper; }
};

/* p0 = the scalar */
class NVMatrixOps_MinWithScalar {
    float scalar;
public:
    __device__ NVMatrixOps_MinWithScalar(const float p0, const float p1 = 0.0f) : scalar(p0) {}
    __device__ inline float operator()(const float a) const { return a > scalar ? scalar : a; }
};

/* p0 = the scalar */
class NVMatrixOps_MaxWithScalar {
    float scalar;
public:
    __device__ NVMatrixOps_MaxWithScalar(const float p0, const float p1 = 0.0f) : scalar(p0) {}
    __device__ inline float operator()(const float a) const { return a > scalar ? a : scalar; }
};

/* ===================================================================================== *
 * Binary operators (NVMatrixBinaryOps): dest = op(a, b)                                 *
 * ===================================================================================== */
class NVMatrixBinaryOps_Equals {
public:
    FUNCTOR_NO_SCALARS(NVMatrixBinaryOps_Equals)
    __device__ inline float operator()(const float a, const float b) const { return a == b; }
};

class NVMatrixBinaryOps_BiggerThan {
public:
    FUNCTOR_NO_SCALARS(NVMatrixBinaryOps_BiggerThan)
    __device__ inline float operator()(const float a, const float b) const { return a > b; }
};

class NVMatrixBinaryOps_Divide {
public:
    FUNCTOR_NO_SCALARS(NVMatrixBinaryOps_Divide)
    __device__ inline float operator()(const float a, const float b) const { return __fdividef(a, b); }
};

class NVMatrixBinaryOps_Multiply {
public:
    FUNCTOR_NO_SCALARS(NVMatrixBinaryOps_Multiply)
    __device__ inline float operator()(const float a, const float b) const { return a * b; }
};

class NVMatrixBinaryOps_SquaredDiff {
public:
    FUNCTOR_NO_SCALARS(NVMatrixBinaryOps_SquaredDiff)
    __device__ inline float operator()(const float a, const float b) const { return (a - b) * (a - b); }
};

/* p0 = scaleA, p1 = scaleB: a * scaleA + b * scaleB */
class NVMatrixBinaryOps_WeightedAdd {
    float scaleA, scaleB;
public:
    __device__ NVMatrixBinaryOps_WeightedAdd(const float p0, const float p1) : scaleA(p0), scaleB(p1) {}
    __device__ inline float operator()(const float a, const float b) const { return a * scaleA + b * scaleB; }
};

class NVMatrixBinaryOps_Add {
public:
    FUNCTOR_NO_SCALARS(NVMatrixBinaryOps_Add)
    __device__ inline float operator()(const float a, const float b) const { return a + b; }
};

class NVMatrixBinaryOps_First {
public:
    FUNCTOR_NO_SCALARS(NVMatrixBinaryOps_First)
    __device__ inline float operator()(const float a, const float b) const { return a; }
};

class NVMatrixBinaryOps_Second {
public:
    FUNCTOR_NO_SCALARS(NVMatrixBinaryOps_Second)
    __device__ inline float operator()(const float a, const float b) const { return b; }
};

/* p0 = scale: scale * b */
class NVMatrixBinaryOps_SecondScaled {
    float scale;
public:
    __device__ NVMatrixBinaryOps_SecondScaled(const float p0, const float p1 = 0.0f) : scale(p0) {}
    __device__ inline float operator()(const float a, const float b) const { return scale * b; }
};

/* ===================================================================================== *
 * Aggregators (NVMatrixAggs): a reduction's step and its starting value. They double as *
 * binary operators (2012's eltmax layer used NVMatrixAggs::Max that way).               *
 * ===================================================================================== */
class NVMatrixAggs_Sum {
public:
    FUNCTOR_NO_SCALARS(NVMatrixAggs_Sum)
    __device__ inline float operator()(const float a, const float b) const { return a + b; }
    __device__ inline float getBaseValue() const { return 0.0f; }
};

class NVMatrixAggs_Max {
public:
    FUNCTOR_NO_SCALARS(NVMatrixAggs_Max)
    __device__ inline float operator()(const float a, const float b) const { return a > b ? a : b; }
    __device__ inline float getBaseValue() const { return -2e38f; }
};

class NVMatrixAggs_Min {
public:
    FUNCTOR_NO_SCALARS(NVMatrixAggs_Min)
    __device__ inline float operator()(const float a, const float b) const { return a > b ? b : a; }
    __device__ inline float getBaseValue() const { return 2e38f; }
};

/*
 * Not 2012: the aggregate of a matrix under this is 0 when every element is finite and NaN
 * otherwise (0 * inf and 0 * NaN are NaN, and NaN survives every later addition), which
 * makes isfinite() one total aggregation.
 */
class NVMatrixAggs_NonFinite {
public:
    FUNCTOR_NO_SCALARS(NVMatrixAggs_NonFinite)
    __device__ inline float operator()(const float a, const float b) const { return a + 0.0f * b; }
    __device__ inline float getBaseValue() const { return 0.0f; }
};

/* ===================================================================================== *
 * Ternary operators (NVMatrixTernaryOps): dest = op(a, b, c)                            *
 * ===================================================================================== */
class NVMatrixTernaryOps_Add {
public:
    FUNCTOR_NO_SCALARS(NVMatrixTernaryOps_Add)
    __device__ inline float operator()(const float a, const float b, const float c) const { return a + b + c; }
};

/* ===================================================================================== *
 * The neurons' functors (neuron.cuh). An activation is unary: y = f(x). A gradient is   *
 * binary: (unitActGrad, unitAct or unitInput) -> the input gradient; which of the two  *
 * the second argument is, the host side knows (as each Neuron class did).               *
 * ===================================================================================== */

/* relu: max(0, x) */
class ReluOperator {
public:
    FUNCTOR_NO_SCALARS(ReluOperator)
    __device__ inline float operator()(const float x) const { return x < 0.0f ? 0.0f : x; }
};

/* relu (and CHM's nrelu) gradient, from the outputs */
class ReluGradientOperator {
public:
    FUNCTOR_NO_SCALARS(ReluGradientOperator)
    __device__ inline float operator()(const float unitActGrad, const float unitAct) const {
        return unitActGrad * (unitAct > 0.0f);
    }
};

/* brelu[a]: min(a, max(0, x)); p0 = a */
class BoundedReluOperator {
    float _a;
public:
    __device__ BoundedReluOperator(const float p0, const float p1 = 0.0f) : _a(p0) {}
    __device__ inline float operator()(const float x) const { return x < 0.0f ? 0.0f : x > _a ? _a : x; }
};

/* brelu gradient, from the outputs; p0 = a */
class BoundedReluGradientOperator {
    float _a;
public:
    __device__ BoundedReluGradientOperator(const float p0, const float p1 = 0.0f) : _a(p0) {}
    __device__ inline float operator()(const float unitActGrad, const float unitAct) const {
        return unitActGrad * (unitAct > 0.0f) * (unitAct < _a);
    }
};

/* abs gradient, from the inputs (the activation is NVMatrixOps_Abs) */
class AbsGradientOperator {
public:
    FUNCTOR_NO_SCALARS(AbsGradientOperator)
    __device__ inline float operator()(const float unitActGrad, const float unitInput) const {
        return unitActGrad * (unitInput > 0.0f ? 1.0f : -1.0f);
    }
};

/* logistic gradient, from the outputs (the activation is NVMatrixOps_Logistic) */
class LogisticGradientOperator {
public:
    FUNCTOR_NO_SCALARS(LogisticGradientOperator)
    __device__ inline float operator()(const float unitActGrad, const float unitAct) const {
        return unitActGrad * unitAct * (1.0f - unitAct);
    }
};

/* tanh[a,b]: a * tanh(b x), written as a * (2 / (1 + exp(-2 b x)) - 1); p0 = a, p1 = b */
class TanhOperator {
    float _a, _n2b;
public:
    __device__ TanhOperator(const float p0, const float p1) : _a(p0), _n2b(-2.0f * p1) {}
    __device__ inline float operator()(const float x) const {
        return _a * (__fdividef(2.0f, 1.0f + __expf(x * _n2b)) - 1.0f);
    }
};

/*
 * tanh gradient, from the outputs: a b (1 - (y/a)^2), written as cuda-convnet r561 wrote it
 * (-4ab t(t-1) with t = (1 - y/a)/2). CHM wrote b (a - y^2/a): the same function.
 * p0 = a, p1 = b
 */
class TanhGradientOperator {
    float _n4ab, _a;
public:
    __device__ TanhGradientOperator(const float p0, const float p1) : _n4ab(-4.0f * p0 * p1), _a(p0) {}
    __device__ inline float operator()(const float unitActGrad, const float unitAct) const {
        const float t = (1.0f - __fdividef(unitAct, _a)) / 2.0f;
        return unitActGrad * _n4ab * (t * (t - 1.0f));
    }
};

/* softrelu: log(1 + e^x), or x above 4 (where the two agree to float precision) */
class SoftReluOperator {
public:
    FUNCTOR_NO_SCALARS(SoftReluOperator)
    __device__ inline float operator()(const float x) const {
        return x > 4.0f ? x : __logf(1.0f + __expf(x));
    }
};

/*
 * softrelu gradient e^u / (1 + e^u). CHM evaluates it at the inputs; cuda-convnet r561 at
 * the outputs (a bug the gradient check shows). The host passes whichever is asked for.
 */
class SoftReluGradientOperator {
public:
    FUNCTOR_NO_SCALARS(SoftReluGradientOperator)
    __device__ inline float operator()(const float unitActGrad, const float unitInput) const {
        if (unitInput > 4.0f) {
            return unitActGrad;
        }
        const float f = __expf(unitInput);
        return unitActGrad * __fdividef(f, 1.0f + f);
    }
};

/* square gradient, from the inputs (the activation is NVMatrixOps_Square) */
class SquareGradientOperator {
public:
    FUNCTOR_NO_SCALARS(SquareGradientOperator)
    __device__ inline float operator()(const float unitActGrad, const float unitInput) const {
        return unitActGrad * 2.0f * unitInput;
    }
};

/* sqrt gradient, from the outputs (the activation is NVMatrixOps_Sqrt) */
class SqrtGradientOperator {
public:
    FUNCTOR_NO_SCALARS(SqrtGradientOperator)
    __device__ inline float operator()(const float unitActGrad, const float unitAct) const {
        return __fdividef(unitActGrad, 2.0f * unitAct);
    }
};

/* linear[a,b]: a x + b; p0 = a, p1 = b. (Its gradient is NVMatrixOps_MultByScalar(a).) */
class LinearOperator {
    float _a, _b;
public:
    __device__ LinearOperator(const float p0, const float p1) : _a(p0), _b(p1) {}
    __device__ inline float operator()(const float x) const { return _a * x + _b; }
};

/* CHM's drelu[a]: x - a tanh(x / a); p0 = a */
class DoubleReluOperator {
    float _a, _n2a;
public:
    __device__ DoubleReluOperator(const float p0, const float p1 = 0.0f) : _a(p0), _n2a(-2.0f / p0) {}
    __device__ inline float operator()(const float x) const {
        return x - _a * (__fdividef(2.0f, 1.0f + __expf(_n2a * x)) - 1.0f);
    }
};

/* drelu gradient tanh(x / a)^2, from the inputs; p0 = a */
class DoubleReluGradientOperator {
    float _n2a;
public:
    __device__ DoubleReluGradientOperator(const float p0, const float p1 = 0.0f) : _n2a(-2.0f / p0) {}
    __device__ inline float operator()(const float unitActGrad, const float unitInput) const {
        const float th = __fdividef(2.0f, 1.0f + __expf(_n2a * unitInput)) - 1.0f;
        return unitActGrad * (th * th);
    }
};

/* ===================================================================================== *
 * CHM's element-wise costs (layer.cuh: CrossEnt2CostLayer, RobustFlickrCost), applied   *
 * as (t = labels, y = outputs)                                                          *
 * ===================================================================================== */

/* log x for x > 0, else -50 (CHM's safelog) */
__device__ inline float safelog(const float x) {
    return x > 0.0f ? __logf(x) : -50.0f;
}

/* cost.crossent2: t log y + (1 - t) log(1 - y) */
class CrossEntOperator {
public:
    FUNCTOR_NO_SCALARS(CrossEntOperator)
    __device__ inline float operator()(const float t, const float y) const {
        return t * safelog(y) + (1.0f - t) * safelog(1.0f - y);
    }
};

/* its gradient for a non-logistic input, as CHM wrote it (the second term's sign is
 * wrong: kept); p0 = coeff */
class CrossEntGradientOperator {
    float _coeff;
public:
    __device__ CrossEntGradientOperator(const float p0, const float p1 = 0.0f) : _coeff(p0) {}
    __device__ inline float operator()(const float t, const float y) const {
        return _coeff * (__fdividef(t, y) + __fdividef(1.0f - t, 1.0f - y));
    }
};

/* cost.rflickr: log(1 + (y - t)^2) */
class RobustFlickrCostOperator {
public:
    FUNCTOR_NO_SCALARS(RobustFlickrCostOperator)
    __device__ inline float operator()(const float t, const float y) const {
        const float d = (y - t) * (y - t);
        return __logf(1 + d);
    }
};

/* its gradient, -coeff * 2d / (1 + d^2) with d = y - t; p0 = coeff */
class RobustFlickrCostGradientOperator {
    float _coeff;
public:
    __device__ RobustFlickrCostGradientOperator(const float p0, const float p1 = 0.0f) : _coeff(p0) {}
    __device__ inline float operator()(const float t, const float y) const {
        const float d = y - t;
        return -_coeff * __fdividef(2.0f * d, 1.0f + d * d);
    }
};

/*
 * 2012's AddGradientBinaryOperator<G>: the ternary operator
 *     (unitActGrad, unitAct, target) -> target + G(unitActGrad, unitAct)
 * with which a neuron added its input gradient to one already there (CHM wrote the sum the
 * other way round; float addition commutes). One flat class per G, for the loader.
 */
#define ADD_GRADIENT_BINARY_OPERATOR(G)                                                       \
    class AddGradientBinaryOperator_##G {                                                     \
        G _op;                                                                                \
    public:                                                                                   \
        __device__ AddGradientBinaryOperator_##G(const float p0 = 0.0f, const float p1 = 0.0f) \
            : _op(p0, p1) {}                                                                  \
        __device__ inline float operator()(const float unitActGrad, const float unitAct,      \
                                           const float target) const {                        \
            return target + _op(unitActGrad, unitAct);                                        \
        }                                                                                     \
    };

ADD_GRADIENT_BINARY_OPERATOR(ReluGradientOperator)
ADD_GRADIENT_BINARY_OPERATOR(BoundedReluGradientOperator)
ADD_GRADIENT_BINARY_OPERATOR(AbsGradientOperator)
ADD_GRADIENT_BINARY_OPERATOR(LogisticGradientOperator)
ADD_GRADIENT_BINARY_OPERATOR(TanhGradientOperator)
ADD_GRADIENT_BINARY_OPERATOR(SoftReluGradientOperator)
ADD_GRADIENT_BINARY_OPERATOR(SquareGradientOperator)
ADD_GRADIENT_BINARY_OPERATOR(SqrtGradientOperator)
ADD_GRADIENT_BINARY_OPERATOR(DoubleReluGradientOperator)
ADD_GRADIENT_BINARY_OPERATOR(CrossEntGradientOperator)
ADD_GRADIENT_BINARY_OPERATOR(RobustFlickrCostGradientOperator)
/* the dropout (hs) layer's accumulating gradient: target + v * mask */
ADD_GRADIENT_BINARY_OPERATOR(NVMatrixBinaryOps_Multiply)

/*
 * 2012's AddGradientOperator<G>: the binary operator (unitActGrad, target) -> target +
 * G(unitActGrad); the linear neuron adds a * actsGrad with G = MultByScalar(a).
 */
#define ADD_GRADIENT_OPERATOR(G)                                                              \
    class AddGradientOperator_##G {                                                           \
        G _op;                                                                                \
    public:                                                                                   \
        __device__ AddGradientOperator_##G(const float p0 = 0.0f, const float p1 = 0.0f)      \
            : _op(p0, p1) {}                                                                  \
        __device__ inline float operator()(const float unitActGrad, const float target) const { \
            return target + _op(unitActGrad);                                                 \
        }                                                                                     \
    };

ADD_GRADIENT_OPERATOR(NVMatrixOps_MultByScalar)

#endif  /* CUDACONVNET_NVMATRIX_OPERATORS_CUH */
