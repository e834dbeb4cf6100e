from channels.masking import mask_id, mask_phone, mask_secret


def test_masks_keep_enough_to_recognise_and_not_enough_to_use():
    assert mask_phone("13812345678") == "138****5678"
    assert mask_id("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o") == "oUpF****eS6o"
    assert mask_secret("abcdefghijkl") == "****ijkl"
    assert mask_secret("short") == "****"
    assert mask_phone("") == mask_id("") == ""
