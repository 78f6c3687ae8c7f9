/*
 * layer_kernels.cu -- what the cost layers, the softmax layer and the element-wise max
 * layer need besides NVMatrix: the logistic-regression cost and its gradients, CHM's top-k
 * (multi-softmax) and cross-entropy costs, and the gradients through a softmax and
 * through an element-wise maximum.
 *
 * Stands for src/layer_kernels.cu of cuda-convnet r561 (2012) and of the CHM AlexNet
 * release, which added the top-k and the cross-entropy kernels.
 *
 *   kLogregCost                                 log p(label) and a top-1 score per case
 *   kMultiSoftmaxCost, kMultiSoftmaxCost_engs   CHM: the same and a top-k score
 *   kLogregCostGrad                             gradient of log p(label) w.r.t. p
 *   kLogregSoftmaxGrad                          gradient of log softmax(x)[label] w.r.t. x
 *   kSoftmaxGrad                                a gradient taken back through a softmax
 *   kEltwiseMaxGrad                             a gradient taken back through max(a, b, ...)
 *   kCrossEntCost, kCrossEntGrad,
 *   kCrossEntSoftmaxGrad                        CHM: cross-entropy with label distributions
 *
 * The launches (grids, blocks, the add flag) are made in
 * cudaconvnet/backends/cuda/layer_kernels.py; cudaconvnet/backends/numpy/layer_kernels.py
 * is the reference the tests hold these kernels to (tests/test_cuda_ops.py on a GPU,
 * tests/test_cuda_util_emulated.py on the CPU emulation).
 *
 * Data: probabilities, activations and their gradients are (numOut, numCases) row-major
 * matrices, so one case is a column whose entries lie numCases floats apart. Class labels
 * are a (1, numCases) float row; label distributions a (numOut, numCases) matrix. Every
 * gradient is that of the log-likelihood (the negative of the cost's), the direction the
 * engine propagates. With `add` a kernel adds its result to the target instead of
 * overwriting it.
 */

#define LOGREG_GRAD_THREADS_X      32
#define LOGREG_GRAD_THREADS_Y      4
#define LOGREG_ERR_THREADS_X       128

/* CHM's guarded logarithm: ln p where p > 0, else (NaN included) -50, so that a zero
 * probability costs a large but finite amount */
__device__ __forceinline__ float safelog(const float p) {
    if (!(p > 0.0f)) {
        return -50.0f;
    }
    return __logf(p);
}

/* the case a thread of the one-thread-per-case kernels owns */
__device__ __forceinline__ int caseOfThread() {
    return blockIdx.x * LOGREG_ERR_THREADS_X + threadIdx.x;
}

/* how many of the numOut entries of a case's column (numCases apart) exceed v, and how
 * many equal it */
__device__ __forceinline__ void rankInColumn(const float* column, const int numCases, const int numOut,
                                             const float v, int& above, int& equal) {
    above = 0;
    equal = 0;
    for (int k = 0; k < numOut; ++k) {
        const float e = column[k * numCases];
        above += e > v;
        equal += e == v;
    }
}

/* the chance that setSize guesses, taken from the top of the ranking and at random among
 * ties, include a label with `above` entries ranked over it and `equal` tied with it
 * (itself counted) */
__device__ __forceinline__ float chanceInTopK(const int setSize, const int above, const int equal) {
    const int slots = setSize - above;
    if (slots <= 0) {
        return 0.0f;
    }
    return equal <= slots ? 1.0f : float(slots) / equal;
}

/*
 * Blocks of LOGREG_ERR_THREADS_X (128) threads, one thread per case:
 * blockIdx.x * 128 + threadIdx.x is the case.
 *
 * probs:           (numOut, numCases)
 * labels:          (1, numCases), class indices
 * maxProbs:        (1, numCases), the largest probability of each case
 * labelLogProbs:   (1, numCases), written: log probs[label]
 * correctProbs:    (1, numCases), written: the chance that a guess of the most probable
 *                  class is right -- 0 when the label's probability is below the maximum,
 *                  else 1 / (the number of classes at the maximum), so that a tie earns
 *                  only its share
 */
__global__ void kLogregCost(float* probs, float* labels, float* maxProbs, float* labelLogProbs,
                            float* correctProbs, const int numCases, const int numOut) {
    const int c = caseOfThread();
    if (c >= numCases) {
        return;
    }
    const float* column = probs + c;
    const float top = maxProbs[c];
    const float p = column[int(labels[c]) * numCases];
    labelLogProbs[c] = __logf(p);
    if (p != top) {
        correctProbs[c] = 0;
        return;
    }
    int atTop = 0;
    for (int k = 0; k < numOut; k++) {
        atTop += column[k * numCases] == top;
    }
    correctProbs[c] = 1.0f / float(atTop);
}

/*
 * CHM. Blocks of LOGREG_ERR_THREADS_X (128) threads, one thread per case (blockIdx.x *
 * 128 + threadIdx.x). The classes are ranked by probs.
 *
 * probs:           (numOut, numCases)
 * labels:          (1, numCases)
 * maxProbs:        (1, numCases), each case's largest probability
 * labelLogProbs:   (1, numCases), written: log probs[label]
 * correctProbs:    (1, numCases), written: the top-1 score of kLogregCost
 * top5Probs:       (1, numCases), written: the chance that setSize guesses hold the label.
 *                  With b classes above the label and e level with it (the label too),
 *                  s = setSize - b free guesses are left: 0 if s <= 0, 1 if e <= s, else s / e.
 */
__global__ void kMultiSoftmaxCost(float* probs, float* labels, float* maxProbs,
                                  float* labelLogProbs, float* correctProbs, float* top5Probs,
                                  const int numCases, const int numOut, const int setSize) {
    const int c = caseOfThread();
    if (c >= numCases) {
        return;
    }
    const float* column = probs + c;
    const float p = column[int(labels[c]) * numCases];
    labelLogProbs[c] = __logf(p);
    int above, equal;
    rankInColumn(column, numCases, numOut, p, above, equal);
    top5Probs[c] = chanceInTopK(setSize, above, equal);
    correctProbs[c] = p != maxProbs[c] ? 0.0f : 1.0f / float(equal);
}

/*
 * CHM. As kMultiSoftmaxCost, but the classes are ranked by their energies (the softmax's
 * inputs), which do not share the rounding of the probabilities.
 *
 * probs, energies: (numOut, numCases)
 * maxEnergies:     (1, numCases), each case's largest energy
 * the other arguments as in kMultiSoftmaxCost
 */
__global__ void kMultiSoftmaxCost_engs(float* probs, float* energies, float* labels, float* maxEnergies,
                                       float* labelLogProbs, float* correctProbs, float* top5Probs,
                                       const int numCases, const int numOut, const int setSize) {
    const int c = caseOfThread();
    if (c >= numCases) {
        return;
    }
    const int row = int(labels[c]) * numCases;
    const float e = energies[row + c];
    labelLogProbs[c] = __logf(probs[row + c]);
    int above, equal;
    rankInColumn(energies + c, numCases, numOut, e, above, equal);
    top5Probs[c] = chanceInTopK(setSize, above, equal);
    correctProbs[c] = e != maxEnergies[c] ? 0.0f : 1.0f / float(equal);
}

/* the (case, output) a thread of the one-thread-per-element kernels owns; false outside */
__device__ __forceinline__ bool elementOfThread(const int numCases, const int numOut, int& c, int& out) {
    c = blockIdx.x * LOGREG_GRAD_THREADS_X + threadIdx.x;
    out = blockIdx.y * LOGREG_GRAD_THREADS_Y + threadIdx.y;
    return out < numOut && c < numCases;
}

/* *dst = v, or *dst += v with add */
template<bool add>
__device__ __forceinline__ void putGrad(float* dst, const float v) {
    if (add) {
        *dst += v;
    } else {
        *dst = v;
    }
}

/*
 * Blocks of LOGREG_GRAD_THREADS_Y x LOGREG_GRAD_THREADS_X (4 x 32) threads, one thread per
 * element: blockIdx.x * 32 + threadIdx.x is the case, blockIdx.y * 4 + threadIdx.y the
 * output.
 *
 * y_l:     (numOut, numCases), the probabilities
 * labels:  (1, numCases)
 * dE_dy_l: (numOut, numCases), written (or added to)
 *
 * dE_dy_l = gradCoeff * (output == label) / y_l
 */
template<bool add>
__global__ void kLogregCostGrad(float* y_l, float* labels, float* dE_dy_l,
                                const int numCases, const int numOut, const float gradCoeff) {
    int c, out;
    if (elementOfThread(numCases, numOut, c, out)) {
        const int e = out * numCases + c;
        putGrad<add>(&dE_dy_l[e], __fdividef(gradCoeff * (int(labels[c]) == out), y_l[e]));
    }
}

/*
 * Blocks of 4 x 32 threads, one per element as in kLogregCostGrad.
 *
 * dE_dy_l: (numOut, numCases), the gradient at the softmax's outputs
 * y_l:     (numOut, numCases), the softmax's outputs
 * dE_dx_l: (numOut, numCases), written (or added to): the gradient at its inputs,
 *          y_l[i] * (sum over j of dE_dy_l[j] * ((j == i) - y_l[j]))
 */
template<bool add>
__global__ void kSoftmaxGrad(float* dE_dy_l, float* y_l, float* dE_dx_l, const int numCases, const int numOut) {
    int c, out;
    if (elementOfThread(numCases, numOut, c, out)) {
        const float* grads = dE_dy_l + c;
        const float* outs = y_l + c;
        float sum = 0;
        for (int j = 0; j < numOut; j++) {
            sum += grads[j * numCases] * ((j == out) - outs[j * numCases]);
        }
        sum *= outs[out * numCases];
        putGrad<add>(&dE_dx_l[out * numCases + c], sum);
    }
}

/*
 * Blocks of 4 x 32 threads, one per element as in kLogregCostGrad. The softmax and the
 * logistic regression cost differentiated together, which never divides by a probability
 * that may be close to 0.
 *
 * y_l:     (numOut, numCases), the softmax's outputs
 * labels:  (1, numCases)
 * dE_dx_l: (numOut, numCases), written (or added to): gradCoeff * ((output == label) - y_l)
 */
template<bool add>
__global__ void kLogregSoftmaxGrad(float* y_l, float* labels, float* dE_dx_l,
                                   const int numCases, const int numOut, const float gradCoeff) {
    int c, out;
    if (elementOfThread(numCases, numOut, c, out)) {
        const int e = out * numCases + c;
        putGrad<add>(&dE_dx_l[e], gradCoeff * ((int(labels[c]) == out) - y_l[e]));
    }
}

/*
 * Blocks of B_X threads (128), one element per thread per pass of the grid, which
 * strides over all numElements.
 *
 * actGrad, input, output, target: numElements floats each (any shape, contiguous)
 *
 * target = actGrad where input equals output (the maximum), else 0 -- every input at the
 * maximum receives the whole gradient; ties are not split.
 */
template<int B_X, bool add>
__global__ void kEltwiseMaxGrad(float* actGrad, float* input, float* output, float* target,
                                const int numElements) {
    const int stride = B_X * gridDim.x;
    for (int e = B_X * blockIdx.x + threadIdx.x; e < numElements; e += stride) {
        putGrad<add>(&target[e], actGrad[e] * (output[e] == input[e]));
    }
}

/*
 * CHM. Blocks of LOGREG_ERR_THREADS_X (128) threads, one thread per case (blockIdx.x *
 * 128 + threadIdx.x).
 *
 * probs:           (numOut, numCases)
 * labels:          (numOut, numCases), a distribution over the classes for each case
 * maxProbs:        (1, numCases), each case's largest probability
 * labelLogProbs:   (1, numCases), written: sum over i of labels[i] * safelog(probs[i])
 * correctProbs:    (1, numCases), written: 1 / (the number of classes at the maximum) if
 *                  one of them has label mass (> 0), else 0
 */
__global__ void kCrossEntCost(float* probs, float* labels, float* maxProbs, float* labelLogProbs,
                              float* correctProbs, const int numCases, const int numOut) {
    const int c = caseOfThread();
    if (c >= numCases) {
        return;
    }
    const float top = maxProbs[c];
    float logLik = 0.0f;
    int atTop = 0;
    bool hit = false;
    for (int k = 0; k < numOut; k++) {
        const float target = labels[k * numCases + c];
        const float p = probs[k * numCases + c];
        const bool isTop = p == top;
        atTop += isTop;
        logLik += target * safelog(p);
        hit |= isTop && target > 0.0f;
    }
    labelLogProbs[c] = logLik;
    correctProbs[c] = hit ? 1.0f / float(atTop) : 0.0f;
}

/*
 * CHM. Blocks of 4 x 32 threads, one per element as in kLogregCostGrad.
 *
 * y_l:     (numOut, numCases), the probabilities
 * labels:  (numOut, numCases), the label distributions
 * dE_dy_l: (numOut, numCases), written (or added to): gradCoeff * labels / y_l
 */
template<bool add>
__global__ void kCrossEntGrad(float* y_l, float* labels, float* dE_dy_l,
                              const int numCases, const int numOut, const float gradCoeff) {
    int c, out;
    if (elementOfThread(numCases, numOut, c, out)) {
        const int e = out * numCases + c;
        putGrad<add>(&dE_dy_l[e], gradCoeff * __fdividef(labels[e], y_l[e]));
    }
}

/*
 * CHM. Blocks of 4 x 32 threads, one per element as in kLogregCostGrad.
 *
 * y_l:     (numOut, numCases), the softmax's outputs
 * labels:  (numOut, numCases), the label distributions
 * dE_dx_l: (numOut, numCases), written (or added to):
 *          gradCoeff * sum over j of labels[j] * ((j == i) - y_l[i]), which is
 *          gradCoeff * (labels[i] - y_l[i] * (the total label mass))
 */
template<bool add>
__global__ void kCrossEntSoftmaxGrad(float* y_l, float* labels, float* dE_dx_l,
                                     const int numCases, const int numOut, const float gradCoeff) {
    int c, out;
    if (elementOfThread(numCases, numOut, c, out)) {
        const float y = y_l[out * numCases + c];
        const float* dist = labels + c;
        float sum = 0;
        for (int j = 0; j < numOut; j++) {
            sum += dist[j * numCases] * ((j == out) - y);
        }
        sum *= gradCoeff;
        putGrad<add>(&dE_dx_l[out * numCases + c], sum);
    }
}
