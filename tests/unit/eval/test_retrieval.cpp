// SPDX-License-Identifier: Apache-2.0
// Recall@K: hand-built cases with known ranks, several captions per image, agreement with a
// brute-force ranking, blocking, and input errors.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include <fusemix/backend/cpu.hpp>
#include <fusemix/eval/retrieval.hpp>

#include "gradcheck.hpp"

namespace fm = fusemix;
using fmatrix = fm::matrix<float>;

namespace {

// Ranks by sorting every similarity row (the definition), for comparison.
std::pair<std::vector<std::size_t>, std::vector<std::size_t>> brute_ranks(const fmatrix& img, const fmatrix& txt,
                                                                          const std::vector<std::int64_t>& owner) {
  fmatrix a = img, b = txt;
  a.rowwise().normalize(), b.rowwise().normalize();
  const fmatrix s = a * b.transpose();
  std::vector<std::size_t> i2t(static_cast<std::size_t>(img.rows())), t2i(static_cast<std::size_t>(txt.rows()));
  for (Eigen::Index i = 0; i < s.rows(); ++i) {
    std::vector<Eigen::Index> order(static_cast<std::size_t>(s.cols()));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](auto p, auto q) { return s(i, p) > s(i, q); });
    for (std::size_t r = 0; r < order.size(); ++r)
      if (owner[static_cast<std::size_t>(order[r])] == i) { i2t[static_cast<std::size_t>(i)] = r; break; }
  }
  for (Eigen::Index j = 0; j < s.cols(); ++j) {
    std::vector<Eigen::Index> order(static_cast<std::size_t>(s.rows()));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](auto p, auto q) { return s(p, j) > s(q, j); });
    for (std::size_t r = 0; r < order.size(); ++r)
      if (order[r] == owner[static_cast<std::size_t>(j)]) { t2i[static_cast<std::size_t>(j)] = r; break; }
  }
  return {i2t, t2i};
}

}  // namespace

BOOST_AUTO_TEST_SUITE(retrieval)

BOOST_AUTO_TEST_CASE(perfect_and_reversed) {
  const fmatrix e = fmatrix::Identity(12, 12);
  const auto r = fm::evaluate_retrieval<float>(e, e);
  BOOST_TEST(r.image_to_text.r1 == 100.0);
  BOOST_TEST(r.text_to_image.r10 == 100.0);
  BOOST_TEST(r.mean == 100.0);
  // Each text points away from its image and towards the next one: rank 1 everywhere, so
  // R@1 = 0 and R@5 = 100.
  fmatrix t = fmatrix::Zero(12, 12);
  for (int j = 0; j < 12; ++j) t(j, (j + 1) % 12) = 1, t(j, j) = 0.5f;
  const auto s = fm::evaluate_retrieval<float>(e, t);
  BOOST_TEST(s.image_to_text.r1 == 0.0);
  BOOST_TEST(s.image_to_text.r5 == 100.0);
  BOOST_TEST(s.text_to_image.r1 == 0.0);
  // A constant embedding ties everything: ties count against the query.
  // At a realistic width too, where a dot product and a GEMM may round differently.
  for (Eigen::Index d : {3, 512}) {
    const auto c = fm::evaluate_retrieval<float>(fmatrix(fmatrix::Constant(20, d, 0.3f)), fmatrix(fmatrix::Constant(20, d, 0.7f)));
    BOOST_TEST(c.image_to_text.r10 == 0.0);
    BOOST_TEST(c.text_to_image.r10 == 0.0);
  }
}

BOOST_AUTO_TEST_CASE(several_captions_take_the_best) {
  // Image 0 has captions 0 and 2; caption 2 matches it exactly, caption 0 does not.
  fmatrix img(2, 2), txt(3, 2);
  img << 1, 0, 0, 1;
  txt << 0, 1, 0.1f, 1, 1, 0;
  const std::vector<std::int64_t> owner{0, 1, 0};
  const auto r = fm::evaluate_retrieval<float>(img, txt, owner);
  BOOST_TEST(r.image_to_text.r1 == 50.0);  // image 0: caption 2 first; image 1: caption 0 (image 0's) first
  BOOST_TEST(std::abs(r.text_to_image.r1 - 100.0 * 2 / 3) < 1e-9);
}

BOOST_AUTO_TEST_CASE(agrees_with_brute_force_in_any_block_size) {
  const fmatrix img = fm::test::random_matrix(37, 8, 1).cast<float>();
  fmatrix txt(74, 8);
  std::vector<std::int64_t> owner(74);
  const fmatrix noise = fm::test::random_matrix(74, 8, 2, 0.8).cast<float>();
  for (int j = 0; j < 74; ++j) owner[j] = (j * 7) % 37, txt.row(j) = img.row(owner[j]) + noise.row(j);
  const auto [i2t, t2i] = brute_ranks(img, txt, owner);
  auto pct = [](const std::vector<std::size_t>& r, std::size_t k) {
    return 100.0 * static_cast<double>(std::count_if(r.begin(), r.end(), [&](auto x) { return x < k; })) /
           static_cast<double>(r.size());
  };
  for (std::size_t block : {1u, 5u, 37u, 1000u}) {
    const auto r = fm::evaluate_retrieval<float>(img, txt, owner, block);
    BOOST_TEST(r.image_to_text.r1 == pct(i2t, 1));
    BOOST_TEST(r.image_to_text.r5 == pct(i2t, 5));
    BOOST_TEST(r.text_to_image.r1 == pct(t2i, 1));
    BOOST_TEST(r.text_to_image.r10 == pct(t2i, 10));
  }
  BOOST_TEST(pct(t2i, 1) > 10.0);  // the case is not trivial either way
  BOOST_TEST(pct(t2i, 1) < 100.0);
}

BOOST_AUTO_TEST_CASE(bad_input) {
  const fmatrix a = fmatrix::Ones(3, 2);
  BOOST_CHECK_THROW((void)fm::evaluate_retrieval<float>(a, fmatrix(fmatrix::Ones(3, 4))), fm::shape_error);
  BOOST_CHECK_THROW((void)fm::evaluate_retrieval<float>(a, fmatrix(fmatrix::Ones(4, 2))), fm::shape_error);
  const std::vector<std::int64_t> out_of_range{0, 1, 3}, missing_image{0, 0, 1}, short_list{0, 1};
  BOOST_CHECK_THROW((void)fm::evaluate_retrieval<float>(a, a, out_of_range), fm::argument_error);
  BOOST_CHECK_EXCEPTION((void)fm::evaluate_retrieval<float>(a, a, missing_image), fm::argument_error,
                        [](const fm::error& e) { return std::string(e.what()).find("image 2") != std::string::npos; });
  BOOST_CHECK_THROW((void)fm::evaluate_retrieval<float>(a, a, short_list), fm::shape_error);
  // A NaN similarity compares false both ways, so NaN embeddings would rank every query first
  // (100% recall): refused, naming the side and the place.
  fmatrix with_nan = fmatrix::Random(3, 2);
  with_nan(2, 1) = std::numeric_limits<float>::quiet_NaN();
  BOOST_CHECK_EXCEPTION((void)fm::evaluate_retrieval<float>(fmatrix(fmatrix::Random(3, 2)), with_nan), fm::numeric_error,
                        [](const fm::error& e) {
                          return std::string(e.what()).find("embeddings of the texts must be finite (expected finite "
                                                            "values, got nan at row 2, column 1)") != std::string::npos;
                        });
}

BOOST_AUTO_TEST_SUITE_END()
