from datetime import UTC, datetime

import polars as pl
import pytest
from faker import Faker
from polars.testing import assert_frame_equal

from sentinel_assets.contracts import FLEET_SCHEMA, REGIONS
from sentinel_assets.contracts import region as region_row
from sentinel_assets.generate import FleetProfile, generate_fleet, site_names
from sentinel_assets.validation import check_contract

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def test_same_seed_region_and_size_give_an_identical_frame():
    first = generate_fleet("ap-south", 2_000, seed=3, as_of=AS_OF)
    again = generate_fleet("ap-south", 2_000, seed=3, as_of=AS_OF)
    assert_frame_equal(first, again)


def test_another_seed_or_region_gives_another_fleet():
    base = generate_fleet("ap-south", 2_000, seed=3, as_of=AS_OF)
    assert not base.equals(generate_fleet("ap-south", 2_000, seed=4, as_of=AS_OF))
    other = generate_fleet("sa-east", 2_000, seed=3, as_of=AS_OF)
    assert not base.drop("device_id", "region", "site").equals(
        other.drop("device_id", "region", "site")
    )


@pytest.mark.parametrize("region", REGIONS)
def test_site_names_are_the_cities_a_full_faker_of_the_region_locale_draws(region):
    """Building only the city providers changes no name: a fleet's sites stay the same."""
    for seed in (0, 7, 123_456):
        full = Faker(region_row(region).site_locale)
        full.seed_instance(seed * 1000 + region_row(region).number)
        names = site_names(region, seed)
        assert names == [full.city() for _ in names]
        assert len(set(names)) > 1


def test_the_fleet_has_the_requested_size_unique_ids_and_one_region():
    fleet = generate_fleet("us-west", 5_000, seed=1, as_of=AS_OF)
    assert fleet.height == 5_000
    assert fleet["device_id"].n_unique() == 5_000
    assert fleet["region"].unique().to_list() == ["us-west"]
    assert fleet["device_id"][0] == "SN-USW-00000000"
    assert check_contract(fleet, FLEET_SCHEMA).passed


def test_an_empty_fleet_is_valid():
    fleet = generate_fleet("us-west", 0, seed=1, as_of=AS_OF)
    assert fleet.height == 0
    assert check_contract(fleet, FLEET_SCHEMA).passed


def test_region_bias_makes_a_region_fail_more():
    def unhealthy_share(profile: FleetProfile) -> float:
        fleet = generate_fleet("af-south", 20_000, seed=5, as_of=AS_OF, profile=profile)
        return fleet["update_status"].is_in(["failed", "partial"]).mean()

    assert unhealthy_share(FleetProfile(region_failure_bias={"af-south": 2.0})) > (
        unhealthy_share(FleetProfile(region_failure_bias={})) + 0.05
    )


def test_model_bias_makes_a_model_fail_more():
    fleet = generate_fleet(
        "eu-central",
        20_000,
        seed=5,
        as_of=AS_OF,
        profile=FleetProfile(model_failure_bias={"cam-x3": 3.0}),
    )
    share = fleet.group_by("model").agg(
        pl.col("update_status").is_in(["failed", "partial"]).mean().alias("unhealthy")
    )
    worst = share.sort("unhealthy", descending=True)["model"][0]
    assert worst == "cam-x3"


def test_only_failed_devices_carry_a_failure_kind():
    fleet = generate_fleet("eu-west", 3_000, seed=2, as_of=AS_OF)
    failed = pl.col("update_status") == "failed"
    assert fleet.filter(failed)["failure_kind"].null_count() == 0
    assert fleet.filter(~failed)["failure_kind"].null_count() == fleet.filter(~failed).height


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"region": "mars"}, "unknown region 'mars'"),
        ({"as_of": datetime(2026, 1, 1)}, "timezone-aware"),
    ],
)
def test_bad_arguments_are_rejected_with_a_clear_message(kwargs, message):
    args = {"region": "us-east", "devices": 10, "seed": 1, "as_of": AS_OF} | kwargs
    with pytest.raises(ValueError, match=message):
        generate_fleet(args.pop("region"), args.pop("devices"), **args)


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ({"region_failure_bias": {"mars": 2.0}}, "unknown keys"),
        ({"model_failure_bias": {"gw-100": -1.0}}, "non-negative"),
        ({"status_weights": {"success": 1.0}}, "missing keys"),
    ],
)
def test_an_invalid_profile_is_rejected(profile, message):
    with pytest.raises(ValueError, match=message):
        FleetProfile(**profile)
