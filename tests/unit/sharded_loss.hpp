// SPDX-License-Identifier: Apache-2.0
/// @file
/// A loss's `forward_shard` at K ranks (threads) against its whole `forward` in one process.
#pragma once

#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstddef>
#include <vector>

#include <fusemix/dist/communicator.hpp>

#include "gradcheck.hpp"
#include "thread_group.hpp"

namespace fusemix::test {

/// Every rank's loss, its rows of dx and dy and the loss's scalars' gradients from
/// `forward_shard` at `ranks` ranks equal the whole loss's within `tol` (relative to the largest
/// value), and the loss and the gradients of the scalars are the same bits on every rank.
/// `setup(loss)` gives each loss its scalars.
template <class L, class Setup>
void check_shard_equals_whole(int ranks, std::size_t row_block, const dmatrix& px, const dmatrix& py, Setup setup,
                              double tol = 1e-12) {
  L whole;
  setup(whole);
  const double l = static_cast<double>(whole.forward(px, py));
  whole.backward();
  const dmatrix dx = whole.dx(), dy = whole.dy();
  const std::vector<double> dparams(whole.gradients().begin(), whole.gradients().end());
  struct result {
    double loss = 0;
    dmatrix dx, dy;
    std::vector<double> dparams;
  };
  std::vector<result> of(static_cast<std::size_t>(ranks));
  thread_group group(ranks);
  group.run([&](thread_group::rank_view& comm) {
    L loss;
    setup(loss);
    loss.set_row_block(row_block);
    result& r = of[static_cast<std::size_t>(comm.rank())];
    r.loss = static_cast<double>(loss.forward_shard(px, py, dist::any_communicator(comm)));
    loss.backward();
    r.dx = loss.dx(), r.dy = loss.dy();
    r.dparams.assign(loss.gradients().begin(), loss.gradients().end());
  });
  const auto n = static_cast<std::size_t>(px.rows());
  double worst = 0;
  for (int k = 0; k < ranks; ++k) {
    const result& r = of[static_cast<std::size_t>(k)];
    const dist::row_range mine = dist::rank_rows(n, k, ranks);
    const auto first = static_cast<Eigen::Index>(mine.first), count = static_cast<Eigen::Index>(mine.count);
    BOOST_TEST_REQUIRE(r.dx.rows() == count);
    BOOST_TEST_REQUIRE(r.dy.rows() == count);
    const double ex = (r.dx - dx.middleRows(first, count)).cwiseAbs().maxCoeff() / dx.cwiseAbs().maxCoeff();
    const double ey = (r.dy - dy.middleRows(first, count)).cwiseAbs().maxCoeff() / dy.cwiseAbs().maxCoeff();
    const double el = std::abs(r.loss - l) / std::abs(l);
    double ep = 0;
    for (std::size_t i = 0; i < dparams.size(); ++i)
      ep = std::max(ep, std::abs(r.dparams[i] - dparams[i]) / std::abs(dparams[i]));
    worst = std::max({worst, ex, ey, el, ep});
    BOOST_TEST(el < tol);
    BOOST_TEST(ex < tol);
    BOOST_TEST(ey < tol);
    BOOST_TEST(ep < tol);
    BOOST_TEST(r.loss == of[0].loss);  // the same bits on every rank
    BOOST_TEST(r.dparams == of[0].dparams);
  }
  BOOST_TEST_MESSAGE(ranks << " ranks, row block " << row_block << ": largest relative difference from the whole loss "
                           << worst);
}

}  // namespace fusemix::test
