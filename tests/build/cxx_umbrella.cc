// Build-only check: the umbrella header in C++ with the usual strict warnings,
// and the inline RNG usable from C++ code.
#include <qnoise/qnoise.h>

#include <cstdint>

int qn_cxx_check(void);
int qn_cxx_check(void)
{
    std::uint32_t w = qn_rng_block_u32(1, 2, 3, 4);
    qn_status st = QN_OK;
    qn_isa isa = QN_ISA_SCALAR;
    return static_cast<int>(w & 1u) + static_cast<int>(st) + static_cast<int>(isa);
}
