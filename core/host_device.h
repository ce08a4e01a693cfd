// MG_HD marks a function that runs on the host and, compiled by nvcc, on a CUDA device too: the scalar
// formulas that both backends share (core/unary_functors.h, core/adamw_element.h).
#pragma once

#ifdef __CUDACC__
#define MG_HD __host__ __device__
#else
#define MG_HD
#endif
