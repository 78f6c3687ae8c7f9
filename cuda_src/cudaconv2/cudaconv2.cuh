/*
 * cudaconv2.cuh: what the cudaconv2 kernel files share (2012: include/cudaconv2/cudaconv2.cuh,
 * which also declared the host wrappers; here the host side is Python, see
 * cudaconvnet/backends/cuda/{filter_acts,img_acts,weight_acts,sparse_acts}.py).
 *
 * Each kernel file includes this header as "cudaconv2/cudaconv2.cuh" (the loader puts
 * cuda_src/ on nvcc's include path).
 */
#ifndef CUDACONVNET_CUDACONV2_CUH
#define CUDACONVNET_CUDACONV2_CUH

// ceil(a / b) for positive ints
#ifndef DIVUP
#define DIVUP(a, b) (((a) + (b) - 1) / (b))
#endif

#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif

#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif

#endif  // CUDACONVNET_CUDACONV2_CUH
