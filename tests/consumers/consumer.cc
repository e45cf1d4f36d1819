// A downstream C++ program built against the installed libqnoise with pkg-config alone.
#include <qnoise/qnoise.h>

#include <cstring>
#include <iostream>
#include <memory>
#include <vector>

namespace {
struct ctx_deleter {
    void operator()(qn_context *c) const { qn_context_destroy(c); }
};
}

int main()
{
    qn_context *raw = nullptr;
    if (qn_context_create(&raw) != QN_OK)
        return 1;
    std::unique_ptr<qn_context, ctx_deleter> ctx(raw);
    std::vector<float> x = {0.9f, 0.1f, -1.0f, 0.0f};
    std::vector<float> c = {0.0f, 0.0f, 1.0f, 0.0f, -1.0f, 0.1f};
    std::vector<uint32_t> codes(2, 99);
    qn_status st = qn_nearest_l2(ctx.get(), x.data(), 2, 2, 2, c.data(), 3, codes.data(), nullptr);
    if (st != QN_OK || codes[0] != 1 || codes[1] != 2) {
        std::cerr << "qn_nearest_l2: " << qn_status_str(st) << "\n";
        return 1;
    }
    if (std::strcmp(qn_version(), QN_VERSION_STRING) != 0)
        return 1;
    std::cout << "C++ consumer OK: libqnoise " << qn_version() << "\n";
    return 0;
}
