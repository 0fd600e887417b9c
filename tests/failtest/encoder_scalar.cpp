// SPDX-License-Identifier: Apache-2.0
// peft::encoder only computes in float or double; any other Scalar is a compile error that
// says so, rather than pages of Eigen template errors.
// PEFT_FAILTEST_EXPECT: peft::encoder: Scalar must be float or double
#include <peft/model/encoder.hpp>

#ifdef PEFT_FAILTEST_KO
using scalar_type = int;
#else
using scalar_type = float;
#endif

// Instantiates the class and all its non-template members, wherever the check sits.
template class peft::encoder<peft::bert, scalar_type>;

int main() { return 0; }
