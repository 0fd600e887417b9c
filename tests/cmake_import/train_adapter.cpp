// SPDX-License-Identifier: Apache-2.0
// A user's first program, built by tests/packaging.cmake against the installed package: one
// include, a Hugging Face BERT folder, a Houlsby adapter trained with peft::fit, saved and
// loaded back. Linked with peft::instances (when the package has it) it compiles in seconds;
// the README's "Build and test times" gives the figures.
//
//   train_adapter BERT_DIR OUT_DIR     (BERT_DIR: config.json, model.safetensors, vocab.txt)
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/io/hf_checkpoint.hpp>
#include <peft/peft.hpp>

#include <iostream>
#include <string>
#include <utility>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: train_adapter BERT_DIR OUT_DIR\n";
    return 2;
  }
  const std::string dir = argv[1], out = argv[2];
  try {
    const peft::encoder<peft::bert, float> enc(peft::load_hf_encoder<float>(dir));
    const auto tok = peft::wordpiece_tokenizer::from_vocab_txt(dir + "/vocab.txt");
    const std::vector<std::pair<std::string, int>> data = {
        {"a fine and moving film", 1}, {"dull slow and long", 0}, {"great fun", 1},     {"awful", 0},
        {"a moving story", 1},         {"slow and awful", 0},     {"fine fun film", 1}, {"long and dull", 0}};
    std::vector<peft::encoded_example> train;
    for (const auto& [text, label] : data) train.push_back({tok.encode(text, 32), {}, -1, label});

    peft::bottleneck_adapter<float> adapter(enc.shape(), peft::bottleneck_config::houlsby(), 1);
    peft::classification_head<float> head(enc.hidden_size(), 2, peft::pool_kind::cls, 0.1, 1);
    peft::task_model model(enc, adapter, head);
    peft::fit_options o;
    o.epochs = 30;
    o.batch_size = 4;
    o.lr = 1e-2;
    o.show_progress = false;
    const auto r = peft::fit(model, train, train, o);

    peft::save_policy(out, adapter);
    const auto back = peft::load_policy<peft::bottleneck_adapter<float>>(out, enc.shape());
    const bool same = back.parameters().values() == adapter.parameters().values();
    const bool learned = r.best.accuracy >= 0.75;  // a trainable adapter fits 8 sentences
    std::cout << "peft train_adapter: " << (same && learned ? "ok" : "FAILED") << " (training accuracy "
              << r.best.accuracy << ", " << adapter.num_parameters() << " adapter parameters, reloaded "
              << (same ? "equal" : "different") << ")\n";
    return same && learned ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "train_adapter: " << e.what() << "\n";
    return 1;
  }
}
